"""A Redis namespace per environment on the real server at 127.0.0.1:6379 (ADR 0017).

Each test uses its own project name, so parallel workers never touch each other's users or keys,
and deletes what it made.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from conveyor.errors import Conflict
from conveyor.resources import redis_namespace as edge

pytestmark = pytest.mark.integration

URL = "redis://127.0.0.1:6379"
NO_RETRY = Retry(NoBackoff(), 0)  # a refused password fails at once (redis-py retries it by default)


@pytest.fixture
def project() -> Iterator[str]:
    name = f"ns{uuid.uuid4().hex[:10]}"
    yield name
    admin = redis.Redis(decode_responses=True)
    admin.acl_deluser(f"{name}.staging", f"{name}.dev")
    for db in (0, 14):
        client = redis.Redis(db=db, decode_responses=True)
        keys = [*client.scan_iter(f"{name}:*"), *client.scan_iter(f"other-{name}")]
        if db == 14 and client.get(edge.MARKER) in (f"{name}:dev", f"{name}:qa"):
            keys.append(edge.MARKER)
        if keys:
            client.unlink(*keys)


def login(user: str, password: str) -> redis.Redis:
    client = redis.Redis(
        username=user, password=password, decode_responses=True, socket_timeout=5, retry=NO_RETRY
    )
    client.ping()
    return client


def test_the_acl_user_is_confined_to_its_prefix(project: str) -> None:
    staging, dev = edge.names(project, "staging"), edge.names(project, "dev")
    assert edge.provision(URL, staging) == {"created": [f"user {staging.user}"]}
    edge.provision(URL, dev)
    edge.add_password(URL, staging.user, "staging-pw")
    edge.add_password(URL, dev.user, "dev-pw")
    app = login(staging.user, "staging-pw")

    app.set(f"{staging.prefix}greeting", "hi")
    assert app.get(f"{staging.prefix}greeting") == "hi" and app.incr(f"{staging.prefix}n") == 1
    assert app.publish(f"{staging.prefix}events", "x") == 0
    for denied in (
        lambda: app.get(f"{dev.prefix}greeting"),  # another environment's key
        lambda: app.set("unprefixed", "x"),
        lambda: app.publish(f"{dev.prefix}events", "x"),  # another environment's channel
        lambda: app.config_get("maxmemory"),  # admin
        lambda: app.flushdb(),  # dangerous
        lambda: app.keys("*"),  # dangerous: walks every environment's keys
        lambda: app.acl_list(),
        lambda: app.select(1),  # the namespace lives in database 0
    ):
        with pytest.raises(redis.exceptions.NoPermissionError):
            denied()
    with pytest.raises(redis.exceptions.AuthenticationError):
        login(staging.user, "dev-pw")  # each user only opens with its own password


def test_provisioning_again_keeps_the_passwords_and_restores_the_rules(project: str) -> None:
    n = edge.names(project, "staging")
    edge.provision(URL, n)
    edge.add_password(URL, n.user, "pw-1")
    redis.Redis().execute_command("ACL", "SETUSER", n.user, "~*")  # someone widened it by hand
    assert edge.provision(URL, n) == {"created": []}
    app = login(n.user, "pw-1")
    with pytest.raises(redis.exceptions.NoPermissionError):
        app.get("somebody-else")
    assert edge.describe(URL, n, None) == {"exists": True, "keys": 0, "passwords": 1}


def test_a_rotation_holds_both_passwords_until_the_old_one_is_removed(project: str) -> None:
    n = edge.names(project, "staging")
    edge.provision(URL, n)
    edge.add_password(URL, n.user, "old-password")
    running = login(n.user, "old-password")
    edge.add_password(URL, n.user, "new-password")
    assert login(n.user, "old-password").ping() and login(n.user, "new-password").ping()
    edge.remove_password(URL, n.user, edge.password_hash("old-password"))
    with pytest.raises(redis.exceptions.AuthenticationError):
        login(n.user, "old-password")
    assert login(n.user, "new-password").ping()
    assert running.set(f"{n.prefix}still", "open")  # a connection made before keeps working
    stored = redis.Redis(decode_responses=True).acl_getuser(n.user)
    # the server holds hashes, never the value
    assert stored is not None and stored["passwords"] == [edge.password_hash("new-password")]


def test_reset_deletes_only_the_namespace_keys(project: str) -> None:
    staging, dev = edge.names(project, "staging"), edge.names(project, "dev")
    admin = redis.Redis(decode_responses=True)
    admin.mset({f"{staging.prefix}{i}": i for i in range(2500)})  # more than one SCAN batch
    admin.set(f"{dev.prefix}kept", "1")
    admin.set(f"other-{project}", "1")
    assert edge.reset(URL, staging, None) == 2500
    assert not list(admin.scan_iter(f"{staging.prefix}*"))
    assert admin.get(f"{dev.prefix}kept") == "1" and admin.get(f"other-{project}") == "1"


def test_a_database_index_is_claimed_by_one_environment(project: str) -> None:
    dev, qa = edge.names(project, "dev"), edge.names(project, "qa")
    if redis.Redis(db=14).get(edge.MARKER) not in (None,):
        pytest.skip("database 14 of the local Redis is claimed by a parallel test")
    assert edge.claim_index(URL, dev, 14) == {"created": ["database 14"]}
    assert edge.claim_index(URL, dev, 14) == {"created": []}  # idempotent
    with pytest.raises(Conflict, match=f"database 14 of {URL} belongs to {project}:dev"):
        edge.claim_index(URL, qa, 14)
    db = redis.Redis(db=14, decode_responses=True)
    db.set(f"{project}:dev:a", "1")
    assert edge.describe(URL, dev, 14) == {"exists": True, "keys": 1}
    assert edge.reset(URL, dev, 14) == 1 and db.get(edge.MARKER) == f"{project}:dev"  # the claim stays


def test_an_unreachable_server_is_a_conflict_with_the_fix() -> None:
    with pytest.raises(Conflict) as caught:
        edge.user_exists("redis://127.0.0.1:1", "x")
    assert "cannot be reached" in caught.value.detail and "CONVEYOR_REDIS_URL" in (caught.value.hint or "")
