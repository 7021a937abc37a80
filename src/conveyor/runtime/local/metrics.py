"""Request metrics per environment × version: the router records every request, analysis reads windows.

The router calls `Series.observe` once per request and `Series.inflight_add` around it (one event loop, so
no locks). Each series keeps two things:

* per-second slots in a ring covering the last 15 minutes (counts by status class, errors, upstream
  errors and a latency histogram), which `MetricsRegistry.window` sums for rollout analysis;
* totals since start, which `MetricsRegistry.prometheus_text` exposes for the agent's `/metrics`.

Latency histogram: 121 fixed log-spaced bounds, 10^(k/20) seconds for k = -80…40 (0.1 ms to 100 s,
twenty per decade, rounded to four significant digits). A percentile is located in the bucket that holds
the nearest-rank sample and interpolated geometrically inside it, so the estimate and the exact value
share a bucket: the error is at most 12.3 % of the exact value between 0.1 ms and 100 s, at most 0.1 ms
below 0.1 ms, and a value above 100 s is reported as 100 s. Prometheus gets every fourth bound (five per
decade), which keeps the exposition small while staying exact at the bounds it shows.
"""

from __future__ import annotations

import math
import time
from bisect import bisect_left
from collections.abc import Callable
from dataclasses import dataclass

RETENTION_S = 900
"""How far back `window` can look: 15 minutes of one-second slots."""

BOUNDS: tuple[float, ...] = tuple(float(f"{10 ** (k / 20):.4g}") for k in range(-80, 41))
"""Upper bounds (seconds, inclusive) of the latency buckets; one more bucket holds everything above."""

PROMETHEUS_BOUNDS_STEP = 4
CLASS_NAMES = ("aborted", "1xx", "2xx", "3xx", "4xx", "5xx")
"""Index = status // 100; index 0 holds requests that got no response at all (an injected abort)."""
ALWAYS_REPORTED = (2, 3, 4, 5)
_BUCKETS = len(BOUNDS) + 1
_DURATION = "conveyor_request_duration_seconds"


@dataclass(frozen=True, slots=True)
class WindowStats:
    """What one version served over a recent window; what rollout analysis compares against thresholds."""

    seconds: int
    requests: int
    by_class: dict[str, int]
    errors: int
    error_rate: float
    upstream_errors: int
    rps: float
    p50_ms: float | None
    p95_ms: float | None
    p99_ms: float | None
    inflight: int
    histogram: dict[int, int]
    """Sparse latency histogram: bucket index (see BOUNDS) → requests, for rank tests between versions."""


class _Slot:
    """One second of one series."""

    __slots__ = ("classes", "errors", "hist", "latency_sum", "second", "upstream_errors")

    def __init__(self, second: int) -> None:
        self.second = second
        self.classes = [0] * len(CLASS_NAMES)
        self.errors = 0
        self.upstream_errors = 0
        self.hist = [0] * _BUCKETS
        self.latency_sum = 0.0


class Series:
    """The counters of one environment × version; the router holds one per version to skip lookups."""

    __slots__ = (
        "_now",
        "_ring",
        "classes_total",
        "environment",
        "hist_total",
        "inflight",
        "latency_sum_total",
        "upstream_errors_total",
        "version",
    )

    def __init__(self, environment: str, version: str, now: Callable[[], float]) -> None:
        self.environment = environment
        self.version = version
        self._now = now
        self._ring: list[_Slot | None] = [None] * RETENTION_S
        self.classes_total = [0] * len(CLASS_NAMES)
        self.hist_total = [0] * _BUCKETS
        self.latency_sum_total = 0.0
        self.upstream_errors_total = 0
        self.inflight = 0

    def observe(self, status: int, latency_s: float, upstream_error: bool = False) -> None:
        """Record one finished request (status 0: the connection was dropped without a response)."""
        second = int(self._now())
        index = second % RETENTION_S
        slot = self._ring[index]
        if slot is None or slot.second != second:
            slot = self._ring[index] = _Slot(second)
        klass = status // 100 if 100 <= status < 600 else 0
        bucket = bisect_left(BOUNDS, latency_s)
        slot.classes[klass] += 1
        slot.hist[bucket] += 1
        slot.latency_sum += latency_s
        self.classes_total[klass] += 1
        self.hist_total[bucket] += 1
        self.latency_sum_total += latency_s
        if upstream_error:
            slot.upstream_errors += 1
            self.upstream_errors_total += 1
            slot.errors += 1
        elif klass == 5 or klass == 0:
            slot.errors += 1

    def inflight_add(self, delta: int) -> None:
        """Move the in-flight gauge by `delta`."""
        self.inflight += delta

    def window(self, seconds: float, now: float) -> WindowStats:
        """Sum the last `seconds` (rounded up to whole) one-second slots, the current partial one included."""
        if not 0 < seconds <= RETENTION_S:
            raise ValueError(
                f"a metrics window must be over 0 and at most {RETENTION_S} seconds, got {seconds}"
            )
        seconds = math.ceil(seconds)
        last = int(now)
        classes = [0] * len(CLASS_NAMES)
        hist = [0] * _BUCKETS
        errors = upstream_errors = 0
        for second in range(last - seconds + 1, last + 1):
            slot = self._ring[second % RETENTION_S]
            if slot is None or slot.second != second:
                continue
            for i, count in enumerate(slot.classes):
                classes[i] += count
            for i, count in enumerate(slot.hist):
                if count:
                    hist[i] += count
            errors += slot.errors
            upstream_errors += slot.upstream_errors
        requests = sum(classes)
        return WindowStats(
            seconds=seconds,
            requests=requests,
            by_class=_by_class(classes),
            errors=errors,
            error_rate=errors / requests if requests else 0.0,
            upstream_errors=upstream_errors,
            rps=requests / seconds,
            p50_ms=_percentile_ms(hist, requests, 0.50),
            p95_ms=_percentile_ms(hist, requests, 0.95),
            p99_ms=_percentile_ms(hist, requests, 0.99),
            inflight=self.inflight,
            histogram={i: count for i, count in enumerate(hist) if count},
        )


class MetricsRegistry:
    """Every series of one agent, keyed by environment and version."""

    def __init__(self, now: Callable[[], float] = time.monotonic) -> None:
        self._now = now
        self._series: dict[tuple[str, str], Series] = {}

    def series(self, environment: str, version: str) -> Series:
        """The series for `environment` × `version`, created on first use."""
        key = (environment, version)
        found = self._series.get(key)
        if found is None:
            found = self._series[key] = Series(environment, version, self._now)
        return found

    def observe(
        self, environment: str, version: str, status: int, latency_s: float, upstream_error: bool = False
    ) -> None:
        """Record one finished request."""
        self.series(environment, version).observe(status, latency_s, upstream_error)

    def inflight_add(self, environment: str, version: str, delta: int) -> None:
        """Move the in-flight gauge of `environment` × `version` by `delta`."""
        self.series(environment, version).inflight += delta

    def window(self, environment: str, version: str, seconds: float, now: float | None = None) -> WindowStats:
        """What `version` served in `environment` over the last `seconds` (at most 900)."""
        moment = self._now() if now is None else now
        found = self._series.get((environment, version))
        if found is None:
            found = Series(environment, version, self._now)
        return found.window(seconds, moment)

    def versions(self, environment: str) -> list[str]:
        """Versions with a series in `environment`, sorted."""
        return sorted(v for (env, v) in self._series if env == environment)

    def environments(self) -> list[str]:
        """Environments with at least one series, sorted."""
        return sorted({env for (env, _) in self._series})

    def prometheus_text(self) -> str:
        """Totals since start in the Prometheus text exposition format (version 0.0.4)."""
        series = [self._series[key] for key in sorted(self._series)]
        out: list[str] = []
        out.append("# HELP conveyor_requests_total Requests answered by the router, by status class.")
        out.append("# TYPE conveyor_requests_total counter")
        for s in series:
            labels = _labels(s)
            for klass, count in enumerate(s.classes_total):
                if count or klass in ALWAYS_REPORTED:
                    out.append(
                        f'conveyor_requests_total{{{labels},code_class="{CLASS_NAMES[klass]}"}} {count}'
                    )
        out.append(
            "# HELP conveyor_upstream_errors_total Requests that failed on the way to or from an instance."
        )
        out.append("# TYPE conveyor_upstream_errors_total counter")
        for s in series:
            out.append(f"conveyor_upstream_errors_total{{{_labels(s)}}} {s.upstream_errors_total}")
        out.append(
            "# HELP conveyor_request_duration_seconds From a request's first byte to its response's last."
        )
        out.append("# TYPE conveyor_request_duration_seconds histogram")
        for s in series:
            labels = _labels(s)
            cumulative = 0
            for i, count in enumerate(s.hist_total[: len(BOUNDS)]):
                cumulative += count
                if i % PROMETHEUS_BOUNDS_STEP == 0:
                    out.append(f'{_DURATION}_bucket{{{labels},le="{BOUNDS[i]:g}"}} {cumulative}')
            total = cumulative + s.hist_total[-1]
            out.append(f'{_DURATION}_bucket{{{labels},le="+Inf"}} {total}')
            out.append(f"{_DURATION}_sum{{{labels}}} {s.latency_sum_total!r}")
            out.append(f"{_DURATION}_count{{{labels}}} {total}")
        out.append("# HELP conveyor_requests_in_flight Requests the router is serving right now.")
        out.append("# TYPE conveyor_requests_in_flight gauge")
        for s in series:
            out.append(f"conveyor_requests_in_flight{{{_labels(s)}}} {s.inflight}")
        return "\n".join(out) + "\n"


def percentile_from_histogram(hist: list[int], q: float) -> float | None:
    """The q-quantile (0 < q <= 1) in seconds of a histogram over `BOUNDS`, or None when it is empty."""
    total = sum(hist)
    if not total:
        return None
    rank = max(1, math.ceil(q * total - 1e-9))
    below = 0
    for i, count in enumerate(hist):
        if below + count >= rank:
            if i >= len(BOUNDS):
                return BOUNDS[-1]
            high = BOUNDS[i]
            low = BOUNDS[i - 1] if i else 0.0
            fraction = (rank - below) / count
            if low == 0.0:
                return high * fraction
            # Log-spaced buckets: interpolate on the log scale so the estimate is spread like the bounds.
            return float(low * (high / low) ** fraction)
        below += count
    return BOUNDS[-1]


def _percentile_ms(hist: list[int], total: int, q: float) -> float | None:
    if not total:
        return None
    seconds = percentile_from_histogram(hist, q)
    return None if seconds is None else seconds * 1000.0


def _by_class(classes: list[int]) -> dict[str, int]:
    return {
        name: count
        for i, (name, count) in enumerate(zip(CLASS_NAMES, classes, strict=True))
        if count or i in ALWAYS_REPORTED
    }


def _labels(series: Series) -> str:
    return f'environment="{_escape(series.environment)}",version="{_escape(series.version)}"'


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
