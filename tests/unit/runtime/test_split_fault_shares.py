"""Router faults for chaos gates: a share of requests delayed and a chosen 5xx status, validated up front."""

from __future__ import annotations

import pytest

from conveyor.runtime.local.split import Fault


def test_defaults_keep_the_old_meaning_every_request_delayed_and_500s() -> None:
    fault = Fault(latency_ms=30)
    assert (fault.latency_rate, fault.error_status) == (1.0, 500)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"latency_rate": 1.5}, "fault latency_rate must be between 0 and 1, got 1.5"),
        ({"latency_rate": -0.1}, "fault latency_rate must be between 0 and 1, got -0.1"),
        ({"error_status": 404}, "fault error_status must be a 5xx status, got 404"),
    ],
    ids=["share-above-one", "negative-share", "not-5xx"],
)
def test_bad_shares_and_statuses_are_refused(kwargs: dict[str, float], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Fault(**kwargs)  # type: ignore[arg-type]
