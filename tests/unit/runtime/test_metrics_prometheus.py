"""prometheus_text() read back by a small strict text-format parser, and compared with a real exporter."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from conveyor.runtime.local.metrics import MetricsRegistry

FIXTURE = Path(__file__).resolve().parents[4] / "shared" / "fixtures" / "prometheus" / "otel-go-histogram.txt"
METRIC_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
TYPES = {"counter", "gauge", "histogram", "summary", "untyped"}
SUFFIXES = {"histogram": ("_bucket", "_sum", "_count"), "summary": ("_sum", "_count")}


class ParseError(ValueError):
    pass


@dataclass
class Sample:
    name: str
    labels: dict[str, str]
    value: float


@dataclass
class Family:
    name: str
    type: str
    help: str | None = None
    samples: list[Sample] = field(default_factory=list)


def _labels(text: str, line: str) -> tuple[dict[str, str], str]:
    """Parse `{a="b",…}` at the start of `text`; returns the labels and the rest of the line."""
    labels: dict[str, str] = {}
    i = 1
    while True:
        while text[i] == " ":
            i += 1
        if text[i] == "}":
            return labels, text[i + 1 :]
        if text[i] == '"':  # quoted (UTF-8) label name, as newer exporters write
            end = text.index('"', i + 1)
            name = text[i + 1 : end]
            i = end + 1
        else:
            match = LABEL_NAME.match(text, i)
            if not match:
                raise ParseError(f"bad label name in {line!r}")
            name = match.group()
            i = match.end()
        if text[i : i + 2] != '="':
            raise ParseError(f'expected =" after label {name!r} in {line!r}')
        i += 2
        value = []
        while text[i] != '"':
            if text[i] == "\\":
                escaped = text[i + 1]
                if escaped not in '\\"n':
                    raise ParseError(f"bad escape \\{escaped} in {line!r}")
                value.append("\n" if escaped == "n" else escaped)
                i += 2
            elif text[i] == "\n":
                raise ParseError(f"raw newline in a label value in {line!r}")
            else:
                value.append(text[i])
                i += 1
        i += 1
        if name in labels:
            raise ParseError(f"label {name!r} twice in {line!r}")
        labels[name] = "".join(value)
        if text[i] == ",":
            i += 1
        elif text[i] != "}":
            raise ParseError(f"expected , or }} after a label value in {line!r}")


def parse(text: str) -> dict[str, Family]:
    """Parse the Prometheus text format strictly: declared types, grouped families, valid histograms."""
    if not text.endswith("\n"):
        raise ParseError("the exposition must end with a newline")
    families: dict[str, Family] = {}
    current: str | None = None
    seen: set[tuple[str, tuple[tuple[str, str], ...]]] = set()
    for line in text[:-1].split("\n"):
        if line.startswith("#"):
            parts = line.split(" ", 3)
            if len(parts) >= 3 and parts[1] in ("HELP", "TYPE"):
                name = parts[2]
                if not METRIC_NAME.fullmatch(name):
                    raise ParseError(f"bad metric name {name!r}")
                family = families.get(name)
                if parts[1] == "TYPE":
                    if family is not None and family.samples:
                        raise ParseError(f"TYPE for {name} after its samples")
                    if len(parts) != 4 or parts[3] not in TYPES:
                        raise ParseError(f"bad TYPE line {line!r}")
                    families[name] = Family(name, parts[3], family.help if family else None)
                else:
                    families.setdefault(name, Family(name, "untyped")).help = (
                        parts[3] if len(parts) == 4 else ""
                    )
                current = name
            continue
        match = METRIC_NAME.match(line)
        if not match:
            raise ParseError(f"bad sample line {line!r}")
        name, rest = match.group(), line[match.end() :]
        labels: dict[str, str] = {}
        if rest.startswith("{"):
            labels, rest = _labels(rest, line)
        fields = rest.split(" ")
        if fields[0] != "" or len(fields) not in (2, 3):
            raise ParseError(f"expected one space, a value and an optional timestamp in {line!r}")
        value = float(fields[1])
        family_name = name
        if name not in families:
            for base, kind in (
                (name[: -len(s)], s) for s in ("_bucket", "_sum", "_count") if name.endswith(s)
            ):
                if base in families and kind in SUFFIXES.get(families[base].type, ()):
                    family_name = base
        if family_name not in families or (families[family_name].type == "untyped" and name != family_name):
            raise ParseError(f"sample {name} has no TYPE")
        if family_name != current:
            raise ParseError(f"sample {name} is not grouped with its family {current}")
        key = (name, tuple(sorted(labels.items())))
        if key in seen:
            raise ParseError(f"duplicate series {key}")
        seen.add(key)
        families[family_name].samples.append(Sample(name, labels, value))
    for family in families.values():
        if family.type == "histogram":
            _check_histogram(family)
    return families


def _check_histogram(family: Family) -> None:
    """Buckets ascend, counts are cumulative, +Inf comes last and equals _count; _sum follows."""
    series: dict[tuple[tuple[str, str], ...], list[Sample]] = {}
    for sample in family.samples:
        key = tuple(sorted((k, v) for k, v in sample.labels.items() if k != "le"))
        series.setdefault(key, []).append(sample)
    for key, samples in series.items():
        buckets = [s for s in samples if s.name == family.name + "_bucket"]
        order = [s.name[len(family.name) :] for s in samples]
        if order != ["_bucket"] * len(buckets) + ["_sum", "_count"]:
            raise ParseError(
                f"{family.name}{dict(key)}: expected buckets, then _sum, then _count; got {order}"
            )
        bounds = [float(s.labels["le"]) for s in buckets]
        if bounds != sorted(bounds) or len(set(bounds)) != len(bounds) or not math.isinf(bounds[-1]):
            raise ParseError(f"{family.name}{dict(key)}: le bounds must ascend and end with +Inf")
        counts = [s.value for s in buckets]
        if counts != sorted(counts):
            raise ParseError(f"{family.name}{dict(key)}: bucket counts are not cumulative")
        if counts[-1] != samples[-1].value:
            raise ParseError(f"{family.name}{dict(key)}: +Inf bucket differs from _count")


@pytest.fixture
def registry() -> MetricsRegistry:
    registry = MetricsRegistry(now=lambda: 1000.0)
    for latency in (0.00005, 0.003, 0.003, 0.04, 2.5, 500.0):
        registry.observe("production", "1.4.0", 200, latency)
    registry.observe("production", "1.4.0", 502, 0.001, upstream_error=True)
    registry.observe("production", "1.5.0-rc.1", 0, 0.2)
    registry.inflight_add("production", "1.5.0-rc.1", 2)
    registry.observe('we"ird\\env\nname', "v1", 404, 0.01)
    return registry


class TestOwnExposition:
    def test_parses_strictly(self, registry: MetricsRegistry) -> None:
        families = parse(registry.prometheus_text())
        assert {name: f.type for name, f in families.items()} == {
            "conveyor_requests_total": "counter",
            "conveyor_upstream_errors_total": "counter",
            "conveyor_request_duration_seconds": "histogram",
            "conveyor_requests_in_flight": "gauge",
        }
        assert all(f.help for f in families.values())

    def test_values_match_what_was_observed(self, registry: MetricsRegistry) -> None:
        families = parse(registry.prometheus_text())
        stable = {"environment": "production", "version": "1.4.0"}
        requests = {
            s.labels["code_class"]: s.value
            for s in families["conveyor_requests_total"].samples
            if s.labels.items() >= stable.items()
        }
        assert requests == {"2xx": 6, "3xx": 0, "4xx": 0, "5xx": 1}
        canary = {"environment": "production", "version": "1.5.0-rc.1"}
        aborted = [
            s for s in families["conveyor_requests_total"].samples if s.labels.items() >= canary.items()
        ]
        assert {s.labels["code_class"]: s.value for s in aborted}["aborted"] == 1
        upstream = {s.labels["version"]: s.value for s in families["conveyor_upstream_errors_total"].samples}
        assert upstream["1.4.0"] == 1
        histogram = [
            s
            for s in families["conveyor_request_duration_seconds"].samples
            if s.labels.items() >= stable.items()
        ]
        by_le = {s.labels["le"]: s.value for s in histogram if "le" in s.labels}
        assert (
            by_le["0.0001"],
            by_le["0.001"],
            by_le["0.01"],
            by_le["0.1"],
            by_le["100"],
            by_le["+Inf"],
        ) == (
            1,
            2,
            4,
            5,
            6,
            7,
        )
        total = next(s.value for s in histogram if s.name.endswith("_sum"))
        assert total == pytest.approx(0.00005 + 0.003 + 0.003 + 0.04 + 2.5 + 500.0 + 0.001)
        inflight = {s.labels["version"]: s.value for s in families["conveyor_requests_in_flight"].samples}
        assert inflight["1.5.0-rc.1"] == 2

    def test_label_values_are_escaped(self, registry: MetricsRegistry) -> None:
        families = parse(registry.prometheus_text())
        environments = {s.labels["environment"] for s in families["conveyor_requests_in_flight"].samples}
        assert 'we"ird\\env\nname' in environments


class TestAgainstARealExporter:
    def test_parser_accepts_the_otel_go_exporter_output(self) -> None:
        families = parse(FIXTURE.read_text())
        histogram = families["histogram_baz_bytes"]
        assert histogram.type == "histogram" and len(histogram.samples) == 13
        assert families["target_info"].samples[0].labels["service.name"] == "prometheus_test"

    def test_histogram_lines_follow_the_exporter_layout(self, registry: MetricsRegistry) -> None:
        """Same shape as the exporter: HELP, TYPE, buckets ending at +Inf, then _sum, then _count."""

        def shape(text: str, family: str) -> list[str]:
            kinds = []
            for line in text.splitlines():
                if line.startswith(f"# HELP {family} "):
                    kinds.append("HELP")
                elif line.startswith(f"# TYPE {family} "):
                    kinds.append("TYPE")
                elif line.startswith(family):
                    suffix = line[len(family) :].split("{")[0]
                    last = 'le="+Inf"' in line
                    kinds.append(suffix + ("(+Inf)" if last else ""))
            collapsed: list[str] = []
            for kind in kinds:
                if not collapsed or collapsed[-1] != kind:
                    collapsed.append(kind)
            return collapsed

        theirs = shape(FIXTURE.read_text(), "histogram_baz_bytes")
        ours = shape(registry.prometheus_text(), "conveyor_request_duration_seconds")
        assert theirs == ["HELP", "TYPE", "_bucket", "_bucket(+Inf)", "_sum", "_count"]
        assert ours[: len(theirs)] == theirs
        assert ours == theirs + ["_bucket", "_bucket(+Inf)", "_sum", "_count"] * ((len(ours) - 6) // 4)
        assert len(ours) == 6 + 4 * 2  # three environment × version series


class TestParserIsStrict:
    @pytest.mark.parametrize(
        "text",
        [
            "x_total 1\n",
            "# TYPE x counter\nx 1",
            '# TYPE x counter\nx{a="1} 1\n',
            '# TYPE x counter\nx{a="\\t"} 1\n',
            "# TYPE x counter\nx  1\n",
            "# TYPE x counter\n# TYPE y counter\ny 1\nx 2\n",
            '# TYPE h histogram\nh_bucket{le="1"} 2\nh_bucket{le="+Inf"} 1\nh_sum 1\nh_count 1\n',
            '# TYPE h histogram\nh_bucket{le="1"} 1\nh_sum 1\nh_count 1\n',
            '# TYPE h histogram\nh_bucket{le="+Inf"} 2\nh_sum 1\nh_count 3\n',
            "# TYPE x counter\nx 1\nx 2\n",
        ],
        ids=[
            "no-type",
            "no-final-newline",
            "unterminated-label",
            "bad-escape",
            "two-spaces",
            "family-not-grouped",
            "not-cumulative",
            "no-inf-bucket",
            "inf-not-count",
            "duplicate-series",
        ],
    )
    def test_rejects(self, text: str) -> None:
        with pytest.raises((ParseError, ValueError, IndexError)):
            parse(text)
