"""Route tables and choose_backend: validation, precedence of override and cookie, exact weighted shares."""

from __future__ import annotations

from collections import Counter
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conveyor.runtime.local.split import TOTAL_BP, Backend, Fault, RouteTable, choose_backend

EP1 = (("127.0.0.1", 9001),)
EP2 = (("127.0.0.1", 9002), ("127.0.0.1", 9003))


def table(*backends: Backend, sticky: bool = True) -> RouteTable:
    return RouteTable("production", backends, sticky=sticky)


class TestFault:
    @pytest.mark.parametrize(
        "kwargs",
        [{"latency_ms": -1}, {"error_rate": 1.5}, {"error_rate": -0.1}, {"abort_rate": 2.0}],
        ids=["negative-latency", "error-rate-above-1", "negative-error-rate", "abort-rate-above-1"],
    )
    def test_out_of_range_is_refused(self, kwargs: dict[str, float]) -> None:
        with pytest.raises(ValueError, match="fault"):
            Fault(**kwargs)

    def test_edges_are_allowed(self) -> None:
        assert Fault(latency_ms=0, error_rate=1.0, abort_rate=0.0).error_rate == 1.0


class TestBackend:
    @pytest.mark.parametrize(
        ("version", "weight", "endpoints", "message"),
        [
            ("v1", -1, EP1, "between 0 and 10000"),
            ("v1", 10_001, EP1, "between 0 and 10000"),
            ("v1", True, EP1, "integer"),
            ("v1", 50.5, EP1, "integer"),
            ("", 100, EP1, "non-empty"),
            ("v 1", 100, EP1, "header"),
            ("v1", 100, (("127.0.0.1", 0),), "bad endpoint"),
        ],
        ids=["negative", "over-total", "bool", "float", "empty-version", "space-in-version", "port-0"],
    )
    def test_invalid_backend_is_refused(
        self, version: str, weight: int, endpoints: tuple, message: str
    ) -> None:
        with pytest.raises(ValueError, match=message):
            Backend(version, weight, endpoints)


class TestRouteTable:
    def test_weights_must_sum_to_total(self) -> None:
        with pytest.raises(ValueError, match=r"sum to 10000 basis points .*got 9999 \(v1=9000, v2=999\)"):
            table(Backend("v1", 9000, EP1), Backend("v2", 999, EP2))

    def test_versions_must_be_unique(self) -> None:
        with pytest.raises(ValueError, match="'v1' appears twice"):
            table(Backend("v1", 5000, EP1), Backend("v1", 5000, EP2))

    def test_empty_table_is_valid_and_routes_nowhere(self) -> None:
        assert choose_backend(table(), 0, None, None) is None

    def test_cookie_name_must_be_a_token(self) -> None:
        with pytest.raises(ValueError, match="cookie name"):
            RouteTable("production", (Backend("v1", TOTAL_BP, EP1),), cookie_name="a b")

    def test_from_percentages_keeps_hundredths(self) -> None:
        t = RouteTable.from_percentages("production", {"v1": 99.99, "v2": 0.01}, {"v1": EP1, "v2": EP2})
        assert [(b.version, b.weight_bp) for b in t.backends] == [("v1", 9999), ("v2", 1)]
        assert t.backend("v2") is not None and t.backend("v2").endpoints == EP2  # type: ignore[union-attr]

    def test_from_percentages_refuses_endpoints_of_unknown_versions(self) -> None:
        with pytest.raises(ValueError, match="without a weight: v3"):
            RouteTable.from_percentages("production", {"v1": 100}, {"v1": EP1, "v3": EP2})


class TestChooseBackend:
    def test_override_reaches_a_weight_zero_version(self) -> None:
        t = table(Backend("blue", TOTAL_BP, EP1), Backend("green", 0, EP2))
        chosen = choose_backend(t, 0, None, "green")
        assert chosen is not None and chosen.version == "green"

    def test_override_beats_the_cookie(self) -> None:
        t = table(Backend("blue", 5000, EP1), Backend("green", 5000, EP2))
        chosen = choose_backend(t, 0, "blue", "green")
        assert chosen is not None and chosen.version == "green"

    @pytest.mark.parametrize(
        "override", ["green", "nope"], ids=["version-without-endpoints", "unknown-version"]
    )
    def test_unusable_override_falls_back_to_the_split(self, override: str) -> None:
        t = table(Backend("blue", TOTAL_BP, EP1), Backend("green", 0, ()))
        chosen = choose_backend(t, 1234, None, override)
        assert chosen is not None and chosen.version == "blue"

    def test_cookie_keeps_a_client_on_its_version(self) -> None:
        t = table(Backend("blue", 9999, EP1), Backend("green", 1, EP2))
        assert {choose_backend(t, roll, "green", None).version for roll in range(TOTAL_BP)} == {"green"}  # type: ignore[union-attr]

    @pytest.mark.parametrize(
        ("green_weight", "green_endpoints"),
        [(0, EP2), (5000, ())],
        ids=["cookie-names-weight-zero", "cookie-names-version-without-endpoints"],
    )
    def test_stale_cookie_is_ignored(self, green_weight: int, green_endpoints: tuple) -> None:
        t = table(
            Backend("blue", TOTAL_BP - green_weight, EP1), Backend("green", green_weight, green_endpoints)
        )
        chosen = choose_backend(t, 0, "green", None)
        assert chosen is not None and chosen.version == "blue"

    def test_version_without_endpoints_gets_no_traffic(self) -> None:
        t = table(Backend("blue", 1, EP1), Backend("green", 9999, ()))
        assert {choose_backend(t, roll, None, None).version for roll in range(TOTAL_BP)} == {"blue"}  # type: ignore[union-attr]

    def test_nothing_to_route_to(self) -> None:
        t = table(Backend("blue", TOTAL_BP, ()), Backend("green", 0, EP2))
        assert choose_backend(t, 0, None, None) is None

    @pytest.mark.parametrize("roll", [-1, TOTAL_BP], ids=["negative", "total"])
    def test_roll_out_of_range_is_refused(self, roll: int) -> None:
        with pytest.raises(ValueError, match="roll_bp"):
            choose_backend(table(Backend("blue", TOTAL_BP, EP1)), roll, None, None)


@st.composite
def route_tables(draw: st.DrawFn) -> RouteTable:
    """Tables of 1–5 versions with random weights summing to 10000 and some versions lacking endpoints."""
    count = draw(st.integers(1, 5))
    cuts = sorted(draw(st.lists(st.integers(0, TOTAL_BP), min_size=count - 1, max_size=count - 1)))
    bounds = [0, *cuts, TOTAL_BP]
    backends = []
    for i in range(count):
        has_endpoints = draw(st.booleans()) if count > 1 else True
        endpoints = tuple(("127.0.0.1", 9000 + 10 * i + j) for j in range(draw(st.integers(1, 3))))
        backends.append(Backend(f"v{i}", bounds[i + 1] - bounds[i], endpoints if has_endpoints else ()))
    return RouteTable("production", tuple(backends))


versions = st.one_of(st.none(), st.sampled_from(["v0", "v1", "v2", "v3", "v4", "v9"]))


class TestChooseBackendProperties:
    @given(t=route_tables(), roll=st.integers(0, TOTAL_BP - 1), sticky=versions, override=versions)
    def test_choice_has_endpoints_and_weight_unless_overridden(
        self, t: RouteTable, roll: int, sticky: str | None, override: str | None
    ) -> None:
        chosen = choose_backend(t, roll, sticky, override)
        if chosen is None:
            assert all(b.weight_bp == 0 or not b.endpoints for b in t.backends)
            return
        assert chosen.endpoints
        assert chosen.weight_bp > 0 or chosen.version == override

    @settings(max_examples=60)
    @given(t=route_tables(), sticky=versions)
    def test_weight_zero_is_only_reached_by_override(self, t: RouteTable, sticky: str | None) -> None:
        chosen = {choose_backend(t, roll, sticky, None) for roll in range(TOTAL_BP)}
        assert all(b is None or b.weight_bp > 0 for b in chosen)

    @settings(max_examples=60)
    @given(t=route_tables())
    def test_every_roll_enumerated_gives_each_version_its_exact_share(self, t: RouteTable) -> None:
        counts = Counter(
            b.version  # type: ignore[union-attr]
            for b in (choose_backend(t, roll, None, None) for roll in range(TOTAL_BP))
            if b is not None
        )
        serving = [b for b in t.backends if b.endpoints and b.weight_bp > 0]
        if len(serving) == sum(1 for b in t.backends if b.weight_bp > 0):
            # Every weighted version can serve: shares are the weights, to the basis point.
            assert counts == Counter({b.version: b.weight_bp for b in serving})
            return
        # Some weighted version cannot serve: its share is spread pro rata, off by under one roll.
        held = sum(b.weight_bp for b in serving)
        for b in t.backends:
            if b in serving:
                assert abs(counts[b.version] - Fraction(b.weight_bp * TOTAL_BP, held)) < 1
            else:
                assert counts[b.version] == 0
