"""Router benchmark: an upstream directly, through Conveyor's router and through HAProxy, side by side.

`make bench-router` runs it (see README.md next to this file). For each upstream kind it measures, with
wrk, the saturated throughput and latency of the three paths, then the latency of each at a fixed rate,
and appends the numbers with the machine's description to benchmarks/RESULTS.md.

CPU placement on a small machine: the proxy under test (router or HAProxy) is pinned to CPU 0; wrk and
the upstreams share CPU 1. Direct runs use the same placement, so "added latency" compares like with like.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import platform
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
APP = ROOT / "examples" / "app" / "app.py"
RESULTS = ROOT / "benchmarks" / "RESULTS.md"
PROXY_CPU = "0"
LOAD_CPU = "1"
TICKS = os.sysconf("SC_CLK_TCK")
STATIC_BODY = '{"version": "%s", "environment": "bench", "instance": "static", "path": "/"}'


@dataclass
class Run:
    """One wrk run against one path."""

    scenario: str
    target: str
    mode: str
    requests: int
    seconds: float
    errors: dict[str, int]
    p50_ms: float
    p90_ms: float
    p99_ms: float
    p999_ms: float
    proxy_cpu: float | None = None

    @property
    def rps(self) -> float:
        return self.requests / self.seconds

    @property
    def rps_per_core(self) -> float | None:
        """Throughput per second of proxy CPU: comparable even when the proxy was not the bottleneck."""
        return self.rps / self.proxy_cpu if self.proxy_cpu else None


@dataclass
class Processes:
    """Everything the benchmark started, stopped on the way out (by pid, nothing else)."""

    started: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def start(self, args: list[str], cpu: str, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        proc = subprocess.Popen(
            ["taskset", "-c", cpu, *args],
            env={**os.environ, **(env or {})},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        self.started.append(proc)
        return proc

    def stop_all(self) -> None:
        for proc in self.started:
            if proc.poll() is None:
                proc.terminate()
        for proc in self.started:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_http(port: int, proc: subprocess.Popen[bytes], what: str, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
            raise SystemExit(f"{what} exited with {proc.returncode}: {err}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
                sock.sendall(b"GET / HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n")
                if sock.recv(16).startswith(b"HTTP/1.1 200"):
                    return
        except OSError:
            pass
        time.sleep(0.05)
    raise SystemExit(f"{what} did not answer on port {port}")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def haproxy_static(procs: Processes, workdir: Path) -> tuple[int, int]:
    """Two static upstreams ("v1", "v2") served by one HAProxy on the load CPU: faster than any proxy."""
    v1, v2 = free_port(), free_port()
    frontends = ""
    for name, port in (("v1", v1), ("v2", v2)):
        body = STATIC_BODY % name
        frontends += (
            f"frontend {name}\n    bind 127.0.0.1:{port}\n"
            f"    http-request return status 200 content-type application/json hdr X-App-Version {name}"
            f" string '{body}'\n"
        )
    config = workdir / "static.cfg"
    config.write_text(_HAPROXY_GLOBAL + frontends)
    proc = procs.start(["haproxy", "-db", "-f", str(config)], LOAD_CPU)
    wait_http(v1, proc, "static upstream v1")
    wait_http(v2, proc, "static upstream v2")
    return v1, v2


def example_apps(procs: Processes) -> tuple[int, int]:
    """One example app instance per version (examples/app/app.py, as shipped) on the load CPU."""
    ports = []
    for version in ("v1", "v2"):
        port = free_port()
        proc = procs.start(
            [sys.executable, str(APP)], LOAD_CPU, {"PORT": str(port), "CONVEYOR_VERSION": version}
        )
        wait_http(port, proc, f"example app {version}")
        ports.append(port)
    return ports[0], ports[1]


def conveyor_router(procs: Processes, v1: int, v2: int) -> tuple[int, subprocess.Popen[bytes]]:
    port = free_port()
    args = [sys.executable, "-m", "conveyor.runtime.local.router", "--port", str(port), "--environment", "bench"]
    args += ["--backend", f"v1=127.0.0.1:{v1}:9000", "--backend", f"v2=127.0.0.1:{v2}:1000", "--no-sticky"]
    proc = procs.start(args, PROXY_CPU)
    wait_http(port, proc, "conveyor router")
    return port, proc


def haproxy_split(procs: Processes, workdir: Path, v1: int, v2: int) -> tuple[int, subprocess.Popen[bytes]]:
    """HAProxy doing the router's job: 90/10 weighted split, keep-alive both sides, the same added headers."""
    port = free_port()
    config = workdir / f"split-{port}.cfg"
    config.write_text(
        _HAPROXY_GLOBAL
        + f"""frontend split
    bind 127.0.0.1:{port}
    option forwardfor
    unique-id-format %[uuid()]
    http-request set-header X-Request-ID %[unique-id] unless {{ req.hdr(x-request-id) -m found }}
    http-request set-header X-Forwarded-Proto http
    default_backend versions
backend versions
    balance roundrobin
    http-reuse safe
    http-response set-header X-Conveyor-Version %[srv_name]
    server v1 127.0.0.1:{v1} weight 90
    server v2 127.0.0.1:{v2} weight 10
"""
    )
    proc = procs.start(["haproxy", "-db", "-f", str(config)], PROXY_CPU)
    wait_http(port, proc, "haproxy split")
    return port, proc


_HAPROXY_GLOBAL = """global
    nbthread 1
    maxconn 4000
defaults
    mode http
    timeout connect 3s
    timeout client 75s
    timeout server 60s
    option http-keep-alive
"""


def wrk(
    url: str, seconds: float, connections: int, rate: int | None, proxy: subprocess.Popen[bytes] | None
) -> tuple[dict[str, object], float | None]:
    script = HERE / ("paced.lua" if rate else "report.lua")
    args = ["taskset", "-c", LOAD_CPU, "wrk", "-t1", f"-c{connections}", f"-d{seconds:g}s", "--timeout", "5s"]
    args += ["-s", str(script), url]
    if rate:
        args += ["--", str(rate)]
    before = cpu_seconds(proxy.pid) if proxy else None
    began = time.monotonic()
    out = subprocess.run(args, capture_output=True, text=True, check=True).stdout
    elapsed = time.monotonic() - began
    used = (cpu_seconds(proxy.pid) - before) / elapsed if proxy and before is not None else None
    line = next(line for line in out.splitlines() if line.startswith('{"conveyor_wrk"'))
    return json.loads(line), used


def measure(
    scenario: str,
    targets: dict[str, tuple[int, subprocess.Popen[bytes] | None]],
    args: argparse.Namespace,
) -> list[Run]:
    runs = []
    plans = [("saturated", None, args.connections, args.duration), ("paced", args.rate, 20, args.paced_duration)]
    for mode, rate, connections, seconds in plans:
        for target, (port, proxy) in targets.items():
            url = f"http://127.0.0.1:{port}/"
            wrk(url, args.warmup, connections, rate, None)
            raw, cpu = wrk(url, seconds, connections, rate, proxy)
            run = Run(
                scenario,
                target,
                mode if not rate else f"{rate} req/s",
                int(raw["requests"]),  # type: ignore[call-overload]
                int(raw["duration_us"]) / 1e6,  # type: ignore[call-overload]
                dict(raw["errors"]),  # type: ignore[call-overload]
                int(raw["p50_us"]) / 1000,  # type: ignore[call-overload]
                int(raw["p90_us"]) / 1000,  # type: ignore[call-overload]
                int(raw["p99_us"]) / 1000,  # type: ignore[call-overload]
                int(raw["p999_us"]) / 1000,  # type: ignore[call-overload]
                cpu,
            )
            print(
                f"  {scenario:<12} {target:<8} {run.mode:<12} {run.rps:>9.0f} req/s  p50 {run.p50_ms:6.2f} ms"
                f"  p99 {run.p99_ms:7.2f} ms  errors {sum(run.errors.values())}"
                + (f"  proxy CPU {cpu:.0%}" if cpu is not None else ""),
                flush=True,
            )
            runs.append(run)
    return runs


def machine() -> dict[str, str]:
    model = next(
        (line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
         if line.startswith("model name")),
        platform.processor(),
    )

    def version(cmd: list[str]) -> str:
        done = subprocess.run(cmd, capture_output=True, text=True)
        return (done.stdout or done.stderr).splitlines()[0].strip()

    import httptools
    import uvloop

    return {
        "nproc": str(os.cpu_count()),
        "cpu": model,
        "kernel": platform.release(),
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "python": platform.python_version(),
        "uvloop": uvloop.__version__,
        "httptools": httptools.__version__,
        "wrk": version(["wrk", "--version"]).split(" [")[0],
        "haproxy": version(["haproxy", "-v"]).split(" - ")[0],
    }


def report(runs: list[Run], info: dict[str, str], command: str, args: argparse.Namespace) -> str:
    by = {(r.scenario, r.target, r.mode): r for r in runs}
    lines = [
        f"## Router benchmark — {info['date']}",
        "",
        f"Machine: {info['nproc']} CPUs ({info['cpu']}), kernel {info['kernel']}; Python {info['python']},"
        f" uvloop {info['uvloop']}, httptools {info['httptools']}; {info['wrk']}; {info['haproxy']}.",
        f"Command: `{command}`. Proxy pinned to CPU {PROXY_CPU}; wrk (1 thread) and upstreams on CPU {LOAD_CPU}.",
        f"Saturated runs: {args.connections} keep-alive connections for {args.duration:g} s after a"
        f" {args.warmup:g} s warm-up; paced runs: {args.rate} req/s over 20 connections for {args.paced_duration:g} s.",
        "",
        "| upstream | path | load | req/s | p50 ms | p90 ms | p99 ms | p99.9 ms | errors | proxy CPU | req/s per proxy core |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in runs:
        cpu = f"{r.proxy_cpu:.0%}" if r.proxy_cpu is not None else "–"
        per_core = f"{r.rps_per_core:.0f}" if r.rps_per_core else "–"
        lines.append(
            f"| {r.scenario} | {r.target} | {r.mode} | {r.rps:.0f} | {r.p50_ms:.2f} | {r.p90_ms:.2f} | {r.p99_ms:.2f}"
            f" | {r.p999_ms:.2f} | {sum(r.errors.values())} | {cpu} | {per_core} |"
        )
    lines.append("")
    paced = f"{args.rate} req/s"
    for scenario in dict.fromkeys(r.scenario for r in runs):
        router, haproxy = by[(scenario, "router", "saturated")], by[(scenario, "haproxy", "saturated")]
        ratio = router.rps / haproxy.rps
        per_core = (
            f"; per proxy core {router.rps_per_core / haproxy.rps_per_core:.0%}"
            f" ({router.rps_per_core:.0f} vs {haproxy.rps_per_core:.0f} req/s per CPU-second)"
            if router.rps_per_core and haproxy.rps_per_core
            else ""
        )
        direct_p99 = by[(scenario, "direct", paced)].p99_ms
        added = by[(scenario, "router", paced)].p99_ms - direct_p99
        added_haproxy = by[(scenario, "haproxy", paced)].p99_ms - direct_p99
        lines.append(
            f"- **{scenario}**: router/HAProxy throughput {ratio:.0%}{per_core} (target ≥ 50 %);"
            f" added p99 at {paced}: router {added:+.2f} ms, HAProxy {added_haproxy:+.2f} ms (target ≤ 2 ms)."
        )
    lines.append("")
    return "\n".join(lines)


@contextlib.contextmanager
def processes() -> Iterator[Processes]:
    procs = Processes()
    try:
        yield procs
    finally:
        procs.stop_all()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=10, help="seconds per saturated run")
    parser.add_argument("--paced-duration", type=float, default=15, help="seconds per fixed-rate run")
    parser.add_argument("--warmup", type=float, default=2, help="seconds of unmeasured load before each run")
    parser.add_argument("--connections", type=int, default=32, help="wrk connections for saturated runs")
    parser.add_argument("--rate", type=int, default=1000, help="requests per second for the paced runs")
    parser.add_argument("--scenarios", default="static,example-app", help="static and/or example-app")
    parser.add_argument("--no-append", action="store_true", help=f"print only; do not append to {RESULTS.name}")
    args = parser.parse_args()
    missing = [tool for tool in ("wrk", "haproxy", "taskset") if shutil.which(tool) is None]
    if missing:
        raise SystemExit(
            f"missing {', '.join(missing)}: install with `apt-get install -y wrk haproxy util-linux` (Debian)"
        )
    if (os.cpu_count() or 1) < 2:
        raise SystemExit("the benchmark pins the proxy and the load to different CPUs: it needs 2 or more")
    info = machine()
    command = "make bench-router" if os.environ.get("MAKELEVEL") else " ".join([Path(sys.argv[0]).name, *sys.argv[1:]])
    runs: list[Run] = []
    with processes() as procs, tempfile.TemporaryDirectory(prefix="conveyor-bench-") as tmp:
        for scenario in args.scenarios.split(","):
            if scenario == "static":
                v1, v2 = haproxy_static(procs, Path(tmp))
            elif scenario == "example-app":
                v1, v2 = example_apps(procs)
            else:
                raise SystemExit(f"unknown scenario {scenario!r} (static, example-app)")
            router_port, router = conveyor_router(procs, v1, v2)
            haproxy_port, haproxy = haproxy_split(procs, Path(tmp), v1, v2)
            print(f"{scenario}: upstreams {v1}/{v2}, router :{router_port}, haproxy :{haproxy_port}", flush=True)
            targets = {"direct": (v1, None), "router": (router_port, router), "haproxy": (haproxy_port, haproxy)}
            runs += measure(scenario, targets, args)
    text = report(runs, info, command, args)
    print()
    print(text)
    if not args.no_append:
        header = "" if RESULTS.exists() else "# Benchmark results\n\nAppended by the benchmarks; newest last.\n\n"
        with RESULTS.open("a") as out:
            out.write(header + text + "\n")
        print(f"appended to {RESULTS.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
