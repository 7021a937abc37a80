"""Redis edge: an environment's namespace on a shared server, as an ACL user or a database index (ADR 0017).

In `acl` mode the environment gets a user that may only touch keys and channels under
`PROJECT:ENVIRONMENT:` and has no admin or dangerous commands. A user holds several passwords at
once, so a rotation adds the new one and removes the old once no instance needs it. Passwords
reach the server as SHA-256 hashes (`#…`), the form Redis stores, never as plain text. In
`db-index` mode the environment owns one database number, claimed by a marker key in it.
`reset` deletes by SCAN + UNLINK, never FLUSHDB: the server is shared.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from conveyor.errors import Conflict

DEFAULT_SERVER = "redis://127.0.0.1:6379"
COMMANDS = ("nocommands", "+@all", "-@admin", "-@dangerous", "-select")
"""Everything but admin and dangerous commands (CONFIG, FLUSHALL, KEYS, DEBUG, …); SELECT stays in db 0."""
MARKER = "conveyor:namespace"
"""In db-index mode, the key that says which environment owns a database number."""
SCAN_COUNT = 1000


@dataclass(frozen=True)
class Names:
    """The ACL user and key prefix of one environment."""

    user: str
    prefix: str
    owner: str
    """`PROJECT:ENVIRONMENT`: what a db-index marker records."""


def names(project: str, environment: str) -> Names:
    """Pure: user `shop.staging` (a dot never occurs in either name), prefix `shop:staging:`."""
    return Names(f"{project}.{environment}", f"{project}:{environment}:", f"{project}:{environment}")


def server_url(configured: str | None) -> str:
    """The server to provision on: conveyor.yaml's, else CONVEYOR_REDIS_URL, else local."""
    return configured or os.environ.get("CONVEYOR_REDIS_URL") or DEFAULT_SERVER


def endpoint(url: str) -> tuple[str, str]:
    """(host, port) the app connects to."""
    parts = urlsplit(url)
    return parts.hostname or "127.0.0.1", str(parts.port or 6379)


def uses_tls(url: str) -> bool:
    return urlsplit(url).scheme == "rediss"


def acl_rules(n: Names) -> list[str]:
    """Pure: the ACL SETUSER rules of a namespace user; passwords are left as they are."""
    return ["on", "resetkeys", f"~{n.prefix}*", "resetchannels", f"&{n.prefix}*", *COMMANDS]


def password_hash(password: str) -> str:
    """The SHA-256 hex digest Redis keeps for an ACL password."""
    return hashlib.sha256(password.encode()).hexdigest()


@contextmanager
def connect(url: str, db: int = 0) -> Iterator[Any]:
    """An admin connection (password from CONVEYOR_REDIS_PASSWORD); a clear error when unreachable."""
    import redis
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    host, port = endpoint(url)
    parts = urlsplit(url)
    client = redis.Redis(
        host=host,
        port=int(port),
        db=db,
        username=parts.username or None,
        password=os.environ.get("CONVEYOR_REDIS_PASSWORD") or None,
        ssl=uses_tls(url),
        socket_timeout=5,
        socket_connect_timeout=5,
        decode_responses=True,
        retry=Retry(NoBackoff(), 0),  # a refusal is reported at once; the caller decides to retry
    )
    try:
        client.ping()
        yield client
    except redis.RedisError as exc:
        raise Conflict(
            f"Redis at {host}:{port} refused or cannot be reached: {exc}",
            hint="start it, or point resources.cache.server (or CONVEYOR_REDIS_URL) at a server where "
            "Conveyor may manage ACL users (admin password in CONVEYOR_REDIS_PASSWORD)",
        ) from None
    finally:
        client.close()


def user_exists(url: str, user: str) -> bool:
    with connect(url) as client:
        return client.acl_getuser(user) is not None


def provision(url: str, n: Names) -> dict[str, Any]:
    """Create the user or set its rules again (idempotent); passwords it holds stay."""
    with connect(url) as client:
        existed = client.acl_getuser(n.user) is not None
        client.execute_command("ACL", "SETUSER", n.user, *acl_rules(n))
    return {"created": [] if existed else [f"user {n.user}"]}


def claim_index(url: str, n: Names, db: int) -> dict[str, Any]:
    """Claim database `db` for the environment; refused when another namespace holds it."""
    with connect(url, db) as client:
        claimed = client.set(MARKER, n.owner, nx=True)
        holder = client.get(MARKER)
    if holder != n.owner:
        raise Conflict(
            f"database {db} of {url} belongs to {holder}",
            hint="give this environment another resources.cache.db",
        )
    return {"created": [f"database {db}"] if claimed else []}


def add_password(url: str, user: str, password: str) -> None:
    """Let `user` also authenticate with `password` (sent as its hash)."""
    with connect(url) as client:
        client.execute_command("ACL", "SETUSER", user, f"#{password_hash(password)}")


def remove_password(url: str, user: str, digest: str) -> None:
    """Stop `user` authenticating with the password of `digest`; its open connections stay."""
    with connect(url) as client:
        if client.acl_getuser(user) is not None:
            client.execute_command("ACL", "SETUSER", user, f"!{digest}")


def _matching(client: Any, pattern: str) -> Iterator[list[str]]:
    cursor = 0
    while True:
        cursor, keys = client.scan(cursor, match=pattern, count=SCAN_COUNT)
        if keys:
            yield list(keys)
        if int(cursor) == 0:
            return


def describe(url: str, n: Names, db: int | None) -> dict[str, Any]:
    """Whether the user exists, how many passwords it holds, and how many keys the namespace has."""
    with connect(url, db or 0) as client:
        keys = sum(len(batch) for batch in _matching(client, "*" if db else f"{n.prefix}*"))
        if db:
            return {
                "exists": client.get(MARKER) == n.owner,
                "keys": keys - (1 if client.exists(MARKER) else 0),
            }
        user = client.acl_getuser(n.user)
    if user is None:
        return {"exists": False, "keys": keys}
    return {"exists": True, "keys": keys, "passwords": len(user.get("passwords") or [])}


def reset(url: str, n: Names, db: int | None) -> int:
    """Delete the namespace's keys (its prefix, or every key of its own database but the marker)."""
    deleted = 0
    with connect(url, db or 0) as client:
        if db and client.get(MARKER) != n.owner:
            # only a database this environment claimed is emptied: another one may be someone else's
            raise Conflict(
                f"Redis database {db} is not claimed by {n.owner}; nothing was deleted",
                hint="provision it first (`conveyor resource provision ENV`), or fix its cache.db",
            )
        for batch in _matching(client, "*" if db else f"{n.prefix}*"):
            batch = [key for key in batch if key != MARKER]
            if batch:
                deleted += int(client.unlink(*batch))
    return deleted
