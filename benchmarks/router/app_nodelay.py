"""The example app with Nagle's algorithm off, for the benchmark's app-bound scenario (bench.py starts it).

examples/app/app.py writes each response's headers and body with two send() calls and leaves Nagle's
algorithm on, so on a keep-alive connection the body waits for the client's delayed ACK (about 40 ms on
Linux). This runs the same code with `disable_nagle_algorithm = True`, which is what the app itself should
do; the benchmark reports both.
"""

from __future__ import annotations

import runpy
from pathlib import Path

APP = Path(__file__).resolve().parents[2] / "examples" / "app" / "app.py"

if __name__ == "__main__":
    app = runpy.run_path(str(APP), run_name="conveyor_bench_app")
    app["Handler"].disable_nagle_algorithm = True
    app["main"]()
