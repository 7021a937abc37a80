"""An integration check against a deployed version: a `command` gate with `when: after` runs it.

Conveyor sets CONVEYOR_TARGET_URL (the environment's router) and CONVEYOR_VERSION; every request
carries `X-Conveyor-Version` so it reaches the new version whatever its share of traffic.
Standard library only; exits 1 with the reason when a check fails.
"""

from __future__ import annotations

import json
import os
import sys
import urllib.error
import urllib.request


def get(base: str, path: str, version: str) -> tuple[int, dict[str, object]]:
    request = urllib.request.Request(base + path, headers={"X-Conveyor-Version": version})
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as exc:
        return exc.code, {}


def main() -> int:
    base, version = os.environ["CONVEYOR_TARGET_URL"], os.environ["CONVEYOR_VERSION"]
    failures = []
    for path in ("/", "/checkout", "/cart?items=3"):
        status, body = get(base, path, version)
        ok = status == 200 and body.get("version") == version
        print(f"GET {path}: {status} version={body.get('version')} {'ok' if ok else 'FAILED'}")
        if not ok:
            failures.append(path)
    if failures:
        print(f"{len(failures)} check(s) failed against {version} at {base}: {', '.join(failures)}")
        return 1
    print(f"all checks passed against {version} at {base}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
