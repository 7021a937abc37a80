"""The lock restore, clone, seed and reset take on a target database, against the real PostgreSQL."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid

import pytest

from conveyor.resources import database_lock
from conveyor.resources.database_lock import DatabaseBusy, hold
from tests.conftest import PG_ADMIN_URL, ROOT

pytestmark = pytest.mark.integration

HOLDER = """
import sys, time
from conveyor.resources.database_lock import hold
with hold(sys.argv[1], sys.argv[2], "staging", "restore"):
    print("held", flush=True)
    time.sleep(600)
"""


@pytest.fixture
def database(pg_available: bool) -> str:
    """A name to lock: the lock is on the name, so the database need not exist."""
    return f"conveyor_lock_{uuid.uuid4().hex[:10]}"


def test_a_second_operation_is_refused_at_once_naming_the_first_and_other_databases_are_free(
    database: str,
) -> None:
    with hold(PG_ADMIN_URL, database, "staging", "restore"):
        began = time.monotonic()
        with pytest.raises(DatabaseBusy) as refused, hold(PG_ADMIN_URL, database, "staging", "clone"):
            pytest.fail("a second holder got the lock")
        assert time.monotonic() - began < 2  # refused at once, not after a wait
        error = refused.value
        assert error.status == 409
        assert error.detail == "staging's database is busy: a restore is running; try again when it finishes"
        assert error.hint is not None and error.hint.startswith("A restore started at ")
        assert error.extra["running"] == "restore"
        with hold(PG_ADMIN_URL, f"{database}_other", "qa", "seed"):  # one lock per database
            pass
    with hold(PG_ADMIN_URL, database, "staging", "seed"):  # released when the block ends
        pass


@pytest.mark.parametrize("operation", ["restore", "clone", "seed", "reset"])
def test_each_operation_is_named_to_whoever_it_blocks(
    database: str, operation: database_lock.Operation
) -> None:
    with (
        hold(PG_ADMIN_URL, database, "dev", operation),
        pytest.raises(DatabaseBusy) as refused,
        hold(PG_ADMIN_URL, database, "dev", "reset"),
    ):
        pytest.fail("a second holder got the lock")
    assert f"{database_lock.DESCRIBED[operation]} is running" in refused.value.detail


def test_the_lock_goes_with_a_process_that_dies_holding_it(database: str) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLDER, PG_ADMIN_URL, database], stdout=subprocess.PIPE, text=True, env=env
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
        with pytest.raises(DatabaseBusy), hold(PG_ADMIN_URL, database, "staging", "seed"):
            pass
        os.kill(proc.pid, signal.SIGKILL)  # no unlock, no clean close: the server notices the socket
        proc.wait(timeout=10)
        deadline = time.monotonic() + 10
        while True:
            try:
                with hold(PG_ADMIN_URL, database, "staging", "seed"):
                    break
            except DatabaseBusy:
                assert time.monotonic() < deadline, "the dead process's lock was never released"
                time.sleep(0.1)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
