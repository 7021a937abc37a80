"""Router benchmark: upstreams directly, through Conveyor's router and through HAProxy, side by side.

`make bench-router` runs it (README.md next to this file explains what and why). For each kind of
upstream it measures with wrk (1) saturated throughput and latency of the three paths, with the proxy
pinned to CPU 0 and wrk plus the upstreams on CPU 1, and (2) latency at a fixed rate, with the proxy on its
own CPU and again sharing CPU 1, repeated and interleaved; then it appends the numbers and the machine's
description to benchmarks/RESULTS.md.
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
import statistics
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
SCENARIOS = {
    "static": "HAProxy `http-request return` (C, faster than any proxy: measures proxy capacity)",
    "example-app": "examples/app/app.py, one instance per version (Python threads: the app is the ceiling)",
}
PLACEMENTS = {"own CPU": PROXY_CPU, "shared CPU": LOAD_CPU}


@dataclass
class Run:
    """One wrk run against one path."""

    scenario: str
    target: str
    load: str
    requests: int
    seconds: float
    errors: int
    p50_ms: float
    p90_ms: float
    p99_ms: float
    p999_ms: float
    proxy_cpu: float | None

    @property
    def rps(self) -> float:
        return self.requests / self.seconds

    @property
    def rps_per_core(self) -> float | None:
        """Requests per second of proxy CPU time: comparable even when the proxy was not the bottleneck."""
        return self.rps / self.proxy_cpu if self.proxy_cpu else None


@dataclass
class Processes:
    """Everything the benchmark started; stopped on the way out, by pid."""

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


@contextlib.contextmanager
def processes() -> Iterator[Processes]:
    procs = Processes()
    try:
        yield procs
    finally:
        procs.stop_all()


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
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
            sock.sendall(b"GET / HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n")
            if sock.recv(16).startswith(b"HTTP/1.1 200"):
                return
        time.sleep(0.05)
    raise SystemExit(f"{what} did not answer on port {port}")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def pin(proc: subprocess.Popen[bytes], cpu: str) -> None:
    subprocess.run(["taskset", "-a", "-p", "-c", cpu, str(proc.pid)], check=True, capture_output=True)


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


def static_upstreams(procs: Processes, workdir: Path) -> tuple[int, int]:
    """Two static upstreams ("v1", "v2") answered by one HAProxy on the load CPU."""
    v1, v2 = free_port(), free_port()
    frontends = ""
    for name, port in (("v1", v1), ("v2", v2)):
        frontends += (
            f"frontend {name}\n    bind 127.0.0.1:{port}\n"
            f"    http-request return status 200 content-type application/json hdr X-App-Version {name}"
            f" string '{STATIC_BODY % name}'\n"
        )
    config = workdir / "static.cfg"
    config.write_text(_HAPROXY_GLOBAL + frontends)
    proc = procs.start(["haproxy", "-db", "-f", str(config)], LOAD_CPU)
    wait_http(v1, proc, "static upstream v1")
    wait_http(v2, proc, "static upstream v2")
    return v1, v2


def example_apps(procs: Processes) -> tuple[int, int]:
    """One example-app instance per version on the load CPU."""
    ports = []
    for version in ("v1", "v2"):
        port = free_port()
        env = {"PORT": str(port), "CONVEYOR_VERSION": version}
        proc = procs.start([sys.executable, str(APP)], LOAD_CPU, env)
        wait_http(port, proc, f"example app {version}")
        ports.append(port)
    return ports[0], ports[1]


def conveyor_router(procs: Processes, v1: int, v2: int) -> tuple[int, subprocess.Popen[bytes]]:
    """Conveyor's router as its own process, 90/10 between v1 and v2, no sticky cookie (wrk keeps none)."""
    port = free_port()
    args = [sys.executable, "-m", "conveyor.runtime.local.router", "--port", str(port), "--environment=bench"]
    args += ["--backend", f"v1=127.0.0.1:{v1}:9000", "--backend", f"v2=127.0.0.1:{v2}:1000", "--no-sticky"]
    proc = procs.start(args, PROXY_CPU)
    wait_http(port, proc, "conveyor router")
    return port, proc


def haproxy_split(procs: Processes, workdir: Path, v1: int, v2: int) -> tuple[int, subprocess.Popen[bytes]]:
    """HAProxy doing the router's job: a 90/10 split, keep-alive both sides, the same added headers."""
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


def wrk(
    port: int, seconds: float, connections: int, rate: int | None, proxy: subprocess.Popen[bytes] | None
) -> tuple[dict[str, int], float | None]:
    """One wrk run (1 thread, on the load CPU); returns wrk's numbers and the proxy's CPU share."""
    script = HERE / ("paced.lua" if rate else "report.lua")
    args = ["taskset", "-c", LOAD_CPU, "wrk", "-t1", f"-c{connections}", f"-d{seconds:g}s", "--timeout", "5s"]
    args += ["-s", str(script), f"http://127.0.0.1:{port}/"]
    if rate:
        args += ["--", str(rate)]
    before = cpu_seconds(proxy.pid) if proxy else 0.0
    began = time.monotonic()
    out = subprocess.run(args, capture_output=True, text=True, check=True).stdout
    elapsed = time.monotonic() - began
    used = (cpu_seconds(proxy.pid) - before) / elapsed if proxy else None
    line = next(line for line in out.splitlines() if line.startswith('{"conveyor_wrk"'))
    raw = json.loads(line)
    raw["errors"] = sum(raw["errors"].values())
    return raw, used


def to_run(scenario: str, target: str, load: str, raw: dict[str, int], cpu: float | None) -> Run:
    return Run(
        scenario,
        target,
        load,
        raw["requests"],
        raw["duration_us"] / 1e6,
        raw["errors"],
        raw["p50_us"] / 1000,
        raw["p90_us"] / 1000,
        raw["p99_us"] / 1000,
        raw["p999_us"] / 1000,
        cpu,
    )


def show(run: Run) -> None:
    cpu = f"  proxy CPU {run.proxy_cpu:.0%}" if run.proxy_cpu is not None else ""
    print(
        f"  {run.scenario:<20} {run.target:<8} {run.load:<26} {run.rps:>8.0f} req/s  p50 {run.p50_ms:6.2f} ms"
        f"  p99 {run.p99_ms:7.2f} ms  errors {run.errors}{cpu}",
        flush=True,
    )


def measure(
    scenario: str, targets: dict[str, tuple[int, subprocess.Popen[bytes] | None]], args: argparse.Namespace
) -> list[Run]:
    runs = []
    for target, (port, proxy) in targets.items():
        wrk(port, args.warmup, args.connections, None, None)
        raw, cpu = wrk(port, args.duration, args.connections, None, proxy)
        runs.append(to_run(scenario, target, "saturated", raw, cpu))
        show(runs[-1])
    for placement, cpu_id in PLACEMENTS.items():
        for _, proxy in targets.values():
            if proxy is not None:
                pin(proxy, cpu_id)
        load = f"{args.rate} req/s, proxy {placement}"
        for port, _ in targets.values():
            wrk(port, args.warmup, 20, args.rate, None)
        # Interleaved repeats: slow drifts of a shared machine hit every path alike.
        for _ in range(args.repeats):
            for target, (port, proxy) in targets.items():
                raw, cpu = wrk(port, args.paced_duration, 20, args.rate, proxy)
                runs.append(to_run(scenario, target, load, raw, cpu))
                show(runs[-1])
    for _, proxy in targets.values():
        if proxy is not None:
            pin(proxy, PROXY_CPU)
    return runs


def machine() -> dict[str, str]:
    model = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )

    def first_line(cmd: list[str]) -> str:
        done = subprocess.run(cmd, capture_output=True, text=True)
        return (done.stdout or done.stderr).splitlines()[0].strip()

    import httptools
    import uvloop

    return {
        "nproc": subprocess.run(["nproc"], capture_output=True, text=True).stdout.strip(),
        "cpu": model,
        "kernel": platform.release(),
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "python": platform.python_version(),
        "uvloop": uvloop.__version__,
        "httptools": httptools.__version__,
        "wrk": first_line(["wrk", "--version"]).split(" [")[0],
        "haproxy": first_line(["haproxy", "-v"]).split(" - ")[0],
        "load_before": f"{os.getloadavg()[0]:.2f}",
    }


def report(runs: list[Run], info: dict[str, str], command: str, args: argparse.Namespace) -> str:
    scenarios = list(dict.fromkeys(r.scenario for r in runs))
    lines = [
        f"## Router benchmark — {info['date']}",
        "",
        f"- Machine: `nproc` {info['nproc']}, {info['cpu']}, kernel {info['kernel']}.",
        f"- Software: Python {info['python']}, uvloop {info['uvloop']}, httptools {info['httptools']},"
        f" {info['wrk']}, {info['haproxy']}.",
        f"- Command: `{command}`.",
        f"- Saturated: wrk 1 thread, {args.connections} keep-alive connections, {args.duration:g} s after a"
        f" {args.warmup:g} s warm-up; proxy on CPU {PROXY_CPU}, wrk and upstreams on CPU {LOAD_CPU}.",
        f"- Paced: {args.rate} req/s over 20 connections (benchmarks/router/paced.lua),"
        f" {args.paced_duration:g} s per run, {args.repeats} interleaved repeats; medians shown, every p99"
        f" listed; proxy on its own CPU {PROXY_CPU}, then sharing CPU {LOAD_CPU} with wrk and upstreams.",
        "- Upstreams: " + "; ".join(f"`{s}` = {SCENARIOS[s]}" for s in scenarios) + ".",
        f"- 1-minute load average before / after: {info['load_before']} / {os.getloadavg()[0]:.2f}"
        " (other work on the machine shows up as noise).",
        "",
        "| upstream | path | load | req/s | p50 ms | p90 ms | p99 ms | p99.9 ms | errors | proxy CPU"
        " | req/s per proxy CPU-s | p99 of each repeat |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    groups: dict[tuple[str, str, str], list[Run]] = {}
    for run in runs:
        groups.setdefault((run.scenario, run.target, run.load), []).append(run)
    merged: dict[tuple[str, str, str], Run] = {}
    for key, group in groups.items():
        med = Run(
            *key,
            sum(r.requests for r in group),
            sum(r.seconds for r in group),
            sum(r.errors for r in group),
            statistics.median(r.p50_ms for r in group),
            statistics.median(r.p90_ms for r in group),
            statistics.median(r.p99_ms for r in group),
            statistics.median(r.p999_ms for r in group),
            statistics.median(r.proxy_cpu for r in group) if group[0].proxy_cpu is not None else None,  # type: ignore[type-var]
        )
        merged[key] = med
        cpu = f"{med.proxy_cpu:.0%}" if med.proxy_cpu is not None else "–"
        per_core = f"{med.rps_per_core:.0f}" if med.rps_per_core and key[2] == "saturated" else "–"
        each = ", ".join(f"{r.p99_ms:.2f}" for r in group) if len(group) > 1 else ""
        lines.append(
            f"| {key[0]} | {key[1]} | {key[2]} | {med.rps:.0f} | {med.p50_ms:.2f} | {med.p90_ms:.2f}"
            f" | {med.p99_ms:.2f} | {med.p999_ms:.2f} | {med.errors} | {cpu} | {per_core} | {each} |"
        )
    lines.append("")
    for scenario in scenarios:
        router = merged[(scenario, "router", "saturated")]
        haproxy = merged[(scenario, "haproxy", "saturated")]
        text = f"- **{scenario}**: saturated router/HAProxy = {router.rps / haproxy.rps:.0%} of requests/s"
        if router.rps_per_core and haproxy.rps_per_core:
            text += (
                f", {router.rps_per_core / haproxy.rps_per_core:.0%} per proxy CPU-second"
                f" ({router.rps_per_core:.0f} vs {haproxy.rps_per_core:.0f})"
            )
        text += " (target ≥ 50 %). Added p99 over direct at the fixed rate:"
        for placement in PLACEMENTS:
            load = f"{args.rate} req/s, proxy {placement}"
            direct = merged[(scenario, "direct", load)].p99_ms
            text += (
                f" proxy {placement}: router {merged[(scenario, 'router', load)].p99_ms - direct:+.2f} ms,"
                f" HAProxy {merged[(scenario, 'haproxy', load)].p99_ms - direct:+.2f} ms;"
            )
        lines.append(text.rstrip(";") + " (target ≤ 2 ms).")
    lines.append("")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--duration", type=float, default=8, help="seconds per saturated run")
    parser.add_argument("--paced-duration", type=float, default=8, help="seconds per fixed-rate run")
    parser.add_argument("--repeats", type=int, default=3, help="fixed-rate runs per path and placement")
    parser.add_argument("--warmup", type=float, default=1, help="seconds of unmeasured load before measuring")
    parser.add_argument("--connections", type=int, default=32, help="wrk connections for saturated runs")
    parser.add_argument("--rate", type=int, default=1000, help="requests per second for the fixed-rate runs")
    parser.add_argument("--scenarios", default=",".join(SCENARIOS), help=f"any of {', '.join(SCENARIOS)}")
    parser.add_argument(
        "--no-append", action="store_true", help=f"print only, do not append to {RESULTS.name}"
    )
    args = parser.parse_args()
    missing = [tool for tool in ("wrk", "haproxy", "taskset") if shutil.which(tool) is None]
    if missing:
        raise SystemExit(f"missing {', '.join(missing)}: apt-get install -y wrk haproxy util-linux")
    if (os.cpu_count() or 1) < 2:
        raise SystemExit("the benchmark pins the proxy and the load to different CPUs: it needs 2 or more")
    unknown = set(args.scenarios.split(",")) - set(SCENARIOS)
    if unknown:
        raise SystemExit(f"unknown scenario {', '.join(sorted(unknown))}; choose from {', '.join(SCENARIOS)}")
    info = machine()
    command = "make bench-router" if os.environ.get("MAKELEVEL") else " ".join(["python", *sys.argv])
    runs: list[Run] = []
    for scenario in args.scenarios.split(","):
        with processes() as procs, tempfile.TemporaryDirectory(prefix="conveyor-bench-") as tmp:
            if scenario == "static":
                v1, v2 = static_upstreams(procs, Path(tmp))
            else:
                v1, v2 = example_apps(procs)
            router_port, router = conveyor_router(procs, v1, v2)
            haproxy_port, haproxy = haproxy_split(procs, Path(tmp), v1, v2)
            print(
                f"{scenario}: upstreams :{v1} :{v2}, router :{router_port}, haproxy :{haproxy_port}",
                flush=True,
            )
            targets = {"direct": (v1, None), "router": (router_port, router)}
            targets["haproxy"] = (haproxy_port, haproxy)
            runs += measure(scenario, targets, args)
    text = report(runs, info, command, args)
    print("\n" + text)
    if not args.no_append:
        header = (
            ""
            if RESULTS.exists()
            else "# Benchmark results\n\nAppended by each benchmark run, newest last.\n\n"
        )
        with RESULTS.open("a") as out:
            out.write(header + text + "\n")
        print(f"appended to {RESULTS.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
