"""The load gate: drive a multiple of the expected RPS at the new version and judge the SLOs it serves.

`load_schedule` turns a `LoadGate` into one target rate per second (pure). `drive` sends that schedule
through the environment's router with an open-loop generator (requests leave on time whether or not
earlier ones have answered, up to a bound on requests in flight), pinned to the new version with
`X-Conveyor-Version`, and records each request's status and latency as the client saw them.
`judge_load` (pure) summarises the samples and judges them with `slo_check.judge_slos`. `run_load`
and `run_load_gate` are the blocking entry points the engine's worker threads call; the chaos gate
reuses `drive` for its steady load.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx

from conveyor.pipeline.outcome import GateOutcome
from conveyor.pipeline.slo_check import MIN_REQUESTS, judge_slos
from conveyor.spec.gates import LoadGate
from conveyor.spec.operations import Slos
from conveyor.tls import client_context

MAX_RPS = 2000.0
"""Highest rate one Python generator drives through the local router; higher targets are capped."""
ENOUGH_RATE = 0.8
"""Share of the target rate the generator must reach for the verdict to speak for that load."""
VERSION_HEADER = "x-conveyor-version"

Step = tuple[float, float]
"""(seconds from the start, target requests per second) for the one-second step that starts there."""


@dataclass(frozen=True)
class Sample:
    """One request as the client saw it; status 0 means no response (refused, reset, timed out)."""

    status: int
    latency_ms: float


@dataclass(frozen=True)
class LoadRun:
    """What a drive did: the samples, how many requests the schedule asked for and how many left."""

    samples: list[Sample]
    planned: int
    issued: int
    seconds: float
    peak_rps: float


def load_schedule(gate: LoadGate, expected_rps: float, scale: float, max_rps: float = MAX_RPS) -> list[Step]:
    """One-second steps from `ramp_from` up to `multiplier` × `expected_rps` (linear), capped at `max_rps`.

    `scale` multiplies the gate's duration (as CONVEYOR_TIME_SCALE does); a run lasts at least one second.
    """
    seconds = max(1, round(gate.duration.seconds * scale))
    peak = gate.multiplier * expected_rps
    start = (gate.ramp_from if gate.ramp_from is not None else gate.multiplier) * expected_rps
    steps: list[Step] = []
    for second in range(seconds):
        share = second / (seconds - 1) if seconds > 1 else 1.0
        steps.append((float(second), min(start + (peak - start) * share, max_rps)))
    return steps


def send_offsets(schedule: Iterable[Step]) -> Iterator[float]:
    """When each request leaves, in seconds from the start: evenly spread in its step, fractions carried."""
    carry = 0.0
    for second, rps in schedule:
        carry += rps
        count = math.floor(carry + 1e-9)
        carry -= count
        for k in range(count):
            yield second + k / count


def percentile(ordered: list[float], p: float) -> float | None:
    """The nearest-rank `p`th percentile of sorted values (None when there are none)."""
    if not ordered:
        return None
    rank = max(1, math.ceil(p / 100 * len(ordered)))
    return ordered[rank - 1]


def summarize(samples: list[Sample], seconds: float) -> dict[str, Any]:
    """WindowStats-like numbers from samples: a 5xx or no response counts as an error."""
    latencies = sorted(s.latency_ms for s in samples)
    errors = sum(1 for s in samples if s.status == 0 or s.status >= 500)
    requests = len(samples)

    def ms(p: float) -> float | None:
        value = percentile(latencies, p)
        return None if value is None else round(value, 2)

    return {
        "requests": requests,
        "errors": errors,
        "error_rate": errors / requests if requests else 0.0,
        "rps": round(requests / seconds, 2) if seconds else 0.0,
        "p50_ms": ms(50),
        "p95_ms": ms(95),
        "p99_ms": ms(99),
        "statuses": {str(code): n for code, n in sorted(Counter(s.status for s in samples).items())},
    }


def judge_load(
    run: LoadRun,
    slos: Slos,
    what: str,
    *,
    requested_peak_rps: float | None = None,
    min_requests: int = MIN_REQUESTS,
) -> GateOutcome:
    """Judge a drive's samples against the SLOs; too low a rate or a capped peak is said in words."""
    stats = summarize(run.samples, run.seconds)
    outcome = judge_slos(stats, slos, what, min_requests=min_requests)
    target, achieved = run.planned / run.seconds, run.issued / run.seconds
    capped = requested_peak_rps is not None and requested_peak_rps > run.peak_rps + 1e-9
    evidence = {
        **{k: v for k, v in outcome.evidence.items() if k != "measured"},  # stats below say it all
        **{k: v for k, v in stats.items() if k != "rps"},
        "target_rps": round(target, 2),
        "achieved_rps": round(achieved, 2),
        "peak_target_rps": round(run.peak_rps, 2),
        "seconds": run.seconds,
        "capped": capped,
    }
    reasons = [] if outcome.passed else [outcome.reason]
    if run.issued < ENOUGH_RATE * run.planned:
        reasons.append(
            f"the load generator reached only {_rate(achieved)} of {_rate(target)} rps; "
            "the result would not show the SLOs hold at that load"
        )
    reason = "; ".join(reasons) or outcome.reason
    if requested_peak_rps is not None and capped:
        evidence["requested_peak_rps"] = requested_peak_rps
        reason += f" (load capped at {_rate(run.peak_rps)} rps of the {_rate(requested_peak_rps)} asked for)"
    return GateOutcome("failed" if reasons else "passed", reason, evidence)


async def drive(
    url: str,
    version: str,
    schedule: list[Step],
    *,
    path: str = "/",
    concurrency: int = 128,
    timeout: float = 10.0,
) -> LoadRun:
    """Send the schedule's GET requests to `url` + `path`, pinned to `version`, open loop."""
    samples: list[Sample] = []
    slots = asyncio.Semaphore(concurrency)
    loop = asyncio.get_running_loop()
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    headers = {VERSION_HEADER: version}
    planned = issued = 0
    async with httpx.AsyncClient(
        base_url=url, headers=headers, timeout=timeout, limits=limits, verify=client_context()
    ) as client:
        start = loop.time()
        end = start + len(schedule)
        in_flight: set[asyncio.Task[None]] = set()
        for offset in send_offsets(schedule):
            planned += 1
            if not await _slot(slots, start + offset, end):
                continue  # past the end: the request the generator could not send counts as not reached
            issued += 1
            task = asyncio.create_task(_request(client, path, slots, samples))
            in_flight.add(task)
            task.add_done_callback(in_flight.discard)
        await asyncio.gather(*in_flight)
    peak = max((rps for _, rps in schedule), default=0.0)
    return LoadRun(samples, planned, issued, float(len(schedule)), peak)


async def _slot(slots: asyncio.Semaphore, due: float, end: float) -> bool:
    """Wait until `due`, then for a free slot; False when the schedule's end comes first."""
    loop = asyncio.get_running_loop()
    await asyncio.sleep(max(0.0, due - loop.time()))  # sleep(0) still lets answered requests finish
    remaining = end - loop.time()
    if remaining <= 0:
        return False
    if not slots.locked():
        await slots.acquire()
        return True
    try:
        await asyncio.wait_for(slots.acquire(), remaining)
    except TimeoutError:
        return False
    return True


async def _request(
    client: httpx.AsyncClient, path: str, slots: asyncio.Semaphore, samples: list[Sample]
) -> None:
    # timed from when the request really leaves: a slow generator shows up as a low rate, not as latency
    started = time.perf_counter()
    try:
        response = await client.get(path)
        status = response.status_code
    except httpx.HTTPError:
        status = 0
    finally:
        slots.release()
    samples.append(Sample(status, (time.perf_counter() - started) * 1000))


def run_load(
    url: str,
    version: str,
    schedule: list[Step],
    slos: Slos,
    *,
    requested_peak_rps: float | None = None,
    path: str = "/",
    concurrency: int = 128,
    min_requests: int = MIN_REQUESTS,
) -> GateOutcome:
    """Drive `schedule` at `version` through the router at `url` and judge the SLOs; blocks meanwhile."""
    run = asyncio.run(drive(url, version, schedule, path=path, concurrency=concurrency))
    what = f"{version} under load (peak {_rate(run.peak_rps)} rps)"
    return judge_load(run, slos, what, requested_peak_rps=requested_peak_rps, min_requests=min_requests)


def run_load_gate(
    url: str,
    version: str,
    gate: LoadGate,
    expected_rps: float | None,
    slos: Slos,
    scale: float = 1.0,
    *,
    max_rps: float = MAX_RPS,
    path: str = "/",
) -> GateOutcome:
    """The whole load gate for the engine: schedule from the spec, drive it, judge it."""
    if expected_rps is None:
        return GateOutcome(
            "failed",
            "the environment sets no scale.expected_rps, so the load gate has nothing to multiply; "
            "set it in conveyor.yaml",
            {"gate": gate.name},
        )
    schedule = load_schedule(gate, expected_rps, scale, max_rps)
    return run_load(
        url, version, schedule, slos, requested_peak_rps=gate.multiplier * expected_rps, path=path
    )


def _rate(rps: float) -> str:
    return f"{rps:,.1f}".removesuffix(".0") if rps < 10 else f"{rps:,.0f}"
