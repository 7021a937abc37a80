"""A small HTTP service for demos, tests and benchmarks (standard library only).

It reports its version, has a health endpoint, and can be told to misbehave, either at start-up
through environment variables or at run time with `POST /_fault` (a JSON body):

    APP_ERROR_RATE / "error_rate"   share of requests answered 500 (0.0–1.0)
    APP_LATENCY_MS / "latency_ms"   added latency per request, in milliseconds
    APP_FAIL_HEALTH / "fail_health" /healthz answers 503 while true
    APP_CRASH_AFTER / "crash_after" exit abruptly after this many more requests (0: never)
    "crash": true                   exit abruptly right away

A build can also ship a defect: a `defects.json` next to this file, read at start, such as
`{"error_rate": 0.3, "only_if": "ENABLE_METRICS"}` (a share of requests fails, but only where that
setting is true, the way a bug in a code path only production turns on slips past staging).

Conveyor passes PORT, CONVEYOR_ENV, CONVEYOR_VERSION, the environment's config and its secrets.
`GET /settings/NAME` tells whether a variable reached the instance, as a SHA-256 fingerprint;
`GET /db` runs one query on a new PostgreSQL connection made from the PG* variables; `GET /cache`
increments a counter under REDIS_KEY_PREFIX on a new Redis connection made from the REDIS_* variables.

A build that ships a schema (the `migrations/` directory Conveyor runs before the instances start)
carries a `SCHEMA` file naming which columns this build's code uses, the seed's expand/contract
example: `user_id` (the first release), `both` (writes user_id and account_id, reads account_id),
`account_id` (no longer touches user_id). `POST /users` ({"email"}) adds a user, `GET /users/ID`
reads one back.

Feature flags come from the flagd JSON file Conveyor keeps current (CONVEYOR_FLAGS_FILE); the app
re-reads it when it changes, without a restart. `GET /flags/KEY` answers {"key", "value",
"variant", "reason"} for the user in the `X-User` header (the targeting key) and the query string
as context. A real service would use OpenFeature's flagd provider on the same file
(FLAGD_OFFLINE_FLAG_SOURCE_PATH); this one carries a small evaluator to stay dependency-free.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import socket
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit


class Faults:
    """The current misbehaviour settings, shared by every request thread."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.error_rate = float(os.environ.get("APP_ERROR_RATE", "0") or 0)
        self.latency_ms = float(os.environ.get("APP_LATENCY_MS", "0") or 0)
        self.fail_health = os.environ.get("APP_FAIL_HEALTH", "").lower() in ("1", "true", "yes")
        self.crash_after = int(os.environ.get("APP_CRASH_AFTER", "0") or 0)
        self.served = 0

    def update(self, changes: dict[str, object]) -> dict[str, object]:
        with self.lock:
            if "error_rate" in changes:
                self.error_rate = min(1.0, max(0.0, float(changes["error_rate"])))  # type: ignore[arg-type]
            if "latency_ms" in changes:
                self.latency_ms = max(0.0, float(changes["latency_ms"]))  # type: ignore[arg-type]
            if "fail_health" in changes:
                self.fail_health = bool(changes["fail_health"])
            if "crash_after" in changes:
                self.crash_after = self.served + int(changes["crash_after"])  # type: ignore[call-overload]
            return self.snapshot()

    def snapshot(self) -> dict[str, object]:
        return {
            "error_rate": self.error_rate,
            "latency_ms": self.latency_ms,
            "fail_health": self.fail_health,
            "crash_after": self.crash_after,
        }


FAULTS = Faults()


def load_defects(path: str) -> None:
    """Apply the defect a build shipped with, where its setting is on."""
    try:
        with open(path) as handle:
            defect = json.load(handle)
    except FileNotFoundError:
        return
    setting = defect.pop("only_if", None)
    if setting is None or os.environ.get(setting, "").lower() in ("1", "true", "yes"):
        FAULTS.update(defect)


VERSION = os.environ.get("CONVEYOR_VERSION", "0.0.0-dev")
ENVIRONMENT = os.environ.get("CONVEYOR_ENV", "local")
INSTANCE = os.environ.get("CONVEYOR_INSTANCE", str(os.getpid()))


def murmur3_32(data: bytes) -> int:
    """MurmurHash3 x86 32-bit, seed 0: the hash flagd buckets `fractional` rollouts with."""
    h, mask = 0, 0xFFFFFFFF

    def rotl(value: int, bits: int) -> int:
        return ((value << bits) | (value >> (32 - bits))) & mask

    body = len(data) - len(data) % 4
    for i in range(0, len(data), 4):  # 4-byte blocks, then the 1-3 byte tail
        k = int.from_bytes(data[i : i + 4], "little")
        h ^= rotl((k * 0xCC9E2D51) & mask, 15) * 0x1B873593 & mask
        if i < body:
            h = (rotl(h, 13) * 5 + 0xE6546B64) & mask
    h ^= len(data)
    for shift, factor in ((16, 0x85EBCA6B), (13, 0xC2B2AE35)):
        h = ((h ^ (h >> shift)) * factor) & mask
    return h ^ (h >> 16)


class Flags:
    """The flags in the flagd file, re-read (at most every 200 ms) when its inode, size or mtime change."""

    def __init__(self, path: str | None) -> None:
        self.path, self.lock = path, threading.Lock()
        self.stamp: tuple[int, int, int] | None = None
        self.checked = 0.0
        self.document: dict[str, Any] = {"flags": {}}

    def current(self) -> dict[str, Any]:
        with self.lock:
            if self.path and time.monotonic() - self.checked >= 0.2:
                self.checked = time.monotonic()
                try:
                    st = os.stat(self.path)
                    stamp: tuple[int, int, int] | None = (st.st_ino, st.st_size, st.st_mtime_ns)
                except FileNotFoundError:
                    stamp = None
                if stamp != self.stamp:
                    try:
                        with open(self.path) as handle:
                            self.document = json.load(handle) if stamp else {"flags": {}}
                        self.stamp = stamp
                    except (OSError, ValueError):
                        pass  # keep the last good flags; Conveyor replaces the file atomically
            return self.document

    def resolve(self, key: str, context: dict[str, Any]) -> dict[str, Any]:
        """The flag's value, variant and reason (no value: use the code's default)."""
        flag = self.current()["flags"].get(key)
        if flag is None or flag.get("state") != "ENABLED":
            return {
                "key": key,
                "value": None,
                "variant": None,
                "reason": "DISABLED" if flag else "FLAG_NOT_FOUND",
            }
        variant, reason = flag.get("defaultVariant"), "STATIC"
        if flag.get("targeting"):
            data = {**context, "$flagd": {"flagKey": key, "timestamp": int(time.time())}}
            try:
                chosen = rule(flag["targeting"], data)
            except (LookupError, TypeError, ValueError):
                chosen = None  # an unsupported or failing rule: the default variant, as flagd does
            if isinstance(chosen, bool):
                chosen = str(chosen).lower()
            variant, reason = (
                (chosen, "TARGETING_MATCH") if chosen in flag["variants"] else (variant, "DEFAULT")
            )
        value = flag["variants"].get(variant) if variant is not None else None
        return {"key": key, "value": value, "variant": variant, "reason": reason}


def rule(logic: Any, data: dict[str, Any]) -> Any:
    """A small JsonLogic subset: var, if, ==, !=, !, and, or, in, starts_with, ends_with, fractional."""
    if isinstance(logic, list):
        return [rule(item, data) for item in logic]
    if not (isinstance(logic, dict) and len(logic) == 1):
        return logic
    ((op, args),) = logic.items()
    args = args if isinstance(args, list) else [args]
    if op == "if":
        for i in range(0, len(args) - 1, 2):
            if rule(args[i], data):
                return rule(args[i + 1], data)
        return rule(args[-1], data) if len(args) % 2 else None
    if op in ("and", "or"):
        result = None
        for item in args:
            result = rule(item, data)
            if bool(result) == (op == "or"):
                return result
        return result
    values = [rule(a, data) for a in args]
    if op == "var":
        found: Any = data
        for part in str(values[0]).split("."):
            found = found.get(part) if isinstance(found, dict) else None
        return values[1] if found is None and len(values) > 1 else found
    if op == "fractional":
        by = values.pop(0) if isinstance(values[0], str) or values[0] is None else None
        by = by if isinstance(by, str) else f"{key_of(data)}{data['targetingKey']}"
        total = sum(max(0, int(b[1] if len(b) > 1 else 1)) for b in values)
        point, end = (murmur3_32(by.encode()) * total) >> 32, 0
        for bucket in values:
            end += max(0, int(bucket[1] if len(bucket) > 1 else 1))
            if point < end:
                return bucket[0]
        return None
    simple = {
        "==": lambda a, b: a == b,
        "!=": lambda a, b: a != b,
        "!": lambda a, *_: not a,
        "in": lambda a, b: a in b if isinstance(b, str | list) else False,
        "starts_with": lambda a, b: a.startswith(b),
        "ends_with": lambda a, b: a.endswith(b),
    }
    return simple[op](*values)


def key_of(data: dict[str, Any]) -> str:
    return str(data["$flagd"]["flagKey"])


FLAGS = Flags(os.environ.get("CONVEYOR_FLAGS_FILE"))


class RespError(Exception):
    """An error reply from Redis (`-NOPERM …`, `-WRONGPASS …`)."""


class Resp:
    """The smallest Redis client: commands as RESP arrays of bulk strings, replies parsed (RESP2)."""

    def __init__(self, host: str, port: int, timeout: float = 3.0) -> None:
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.file = self.sock.makefile("rb")

    def __enter__(self) -> Resp:
        return self

    def __exit__(self, *exc: object) -> None:
        self.file.close()
        self.sock.close()

    def call(self, *args: str) -> Any:
        encoded = [a.encode() for a in args]
        self.sock.sendall(
            b"*%d\r\n" % len(encoded) + b"".join(b"$%d\r\n%s\r\n" % (len(a), a) for a in encoded)
        )
        return self._reply()

    def _reply(self) -> Any:
        line = self.file.readline()
        if not line.endswith(b"\r\n"):
            raise OSError("Redis closed the connection")
        kind, rest = line[:1], line[1:-2]
        if kind == b"+":
            return rest.decode()
        if kind == b"-":
            raise RespError(rest.decode())
        if kind == b":":
            return int(rest)
        if kind == b"$":
            return None if int(rest) < 0 else self.file.read(int(rest) + 2)[:-2].decode()
        if kind == b"*":
            return None if int(rest) < 0 else [self._reply() for _ in range(int(rest))]
        raise OSError(f"unexpected reply from Redis: {line[:40]!r}")


def crash() -> None:
    """Die the way a real bug kills a process: no cleanup, no response."""
    sys.stdout.flush()
    os._exit(70)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as a production server would
    disable_nagle_algorithm = True  # else small keep-alive responses wait ~40 ms for a delayed ACK
    server_version = "conveyor-example/1"

    def log_message(self, format: str, *args: object) -> None:
        if os.environ.get("APP_ACCESS_LOG"):
            sys.stdout.write(f"{self.address_string()} {format % args}\n")
            sys.stdout.flush()

    def _send(self, status: int, body: dict[str, object]) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("X-App-Version", VERSION)
        self.end_headers()
        self.wfile.write(data)

    def _body(self) -> bytes:
        """The request body, Content-Length or chunked (the rest of the connection depends on it)."""
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            parts = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    return b"".join(parts)
                parts.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def do_GET(self) -> None:
        if self.path == "/healthz":
            if FAULTS.fail_health:
                self._send(503, {"status": "failing", "version": VERSION})
            else:
                self._send(200, {"status": "ok", "version": VERSION})
            return
        if self.path == "/version":
            self._send(200, {"version": VERSION, "environment": ENVIRONMENT})
            return
        if self.path == "/db":
            self._database()
            return
        if self.path == "/cache":
            self._cache()
            return
        if self.path.startswith("/users/"):
            self._users(None)
            return
        if self.path.startswith("/settings/"):
            # whether a setting reached this instance, as a SHA-256 fingerprint: never the value itself
            name = self.path.removeprefix("/settings/")
            value = os.environ.get(name)
            digest = None if value is None else hashlib.sha256(value.encode()).hexdigest()
            self._send(200, {"name": name, "set": value is not None, "sha256": digest, "pid": os.getpid()})
            return
        if self.path.startswith("/flags/"):
            url = urlsplit(self.path)
            context: dict[str, Any] = dict(parse_qsl(url.query))
            if self.headers.get("X-User"):
                context["targetingKey"] = self.headers["X-User"]
            self._send(200, {**FLAGS.resolve(url.path.removeprefix("/flags/"), context), "pid": os.getpid()})
            return
        self._serve()

    def _users(self, body: bytes | None) -> None:
        """POST /users (body: {"email"}) or GET /users/ID, in the columns this build's SCHEMA names."""
        if SCHEMA is None:
            self._send(501, {"error": "this build ships no schema"})
            return
        import psycopg

        try:
            with psycopg.connect(connect_timeout=3) as conn:
                if body is not None:
                    email = str(json.loads(body or b"{}").get("email") or "someone@example.test")
                    account = f"acct-{random.randrange(10**9)}"
                    row = conn.execute(
                        _INSERT[SCHEMA], (account, email) if SCHEMA != "both" else (account, account, email)
                    ).fetchone()
                    self._send(201, {"id": row[0], "account": account, "version": VERSION})  # type: ignore[index]
                    return
                found = conn.execute(_SELECT[SCHEMA], (int(self.path.rsplit("/", 1)[1]),)).fetchone()
        except (psycopg.Error, ValueError) as exc:
            self._send(503, {"error": str(exc).strip().splitlines()[0] if str(exc).strip() else "error"})
            return
        if found is None:
            self._send(404, {"error": "no such user"})
        else:
            self._send(200, {"id": found[0], "account": found[1], "email": found[2], "version": VERSION})

    def _database(self) -> None:
        """One query on a new connection, with the PG* variables Conveyor gives a provisioned database."""
        try:
            import psycopg  # the interpreter Conveyor runs on has it; the app needs it only here
        except ImportError:
            self._send(501, {"error": "psycopg is not installed"})
            return
        try:
            with psycopg.connect(connect_timeout=3) as conn:
                user, database = conn.execute("SELECT session_user, current_database()").fetchone()  # type: ignore[misc]
        except psycopg.Error as exc:
            self._send(503, {"error": str(exc).strip().splitlines()[0] if str(exc).strip() else "error"})
            return
        self._send(200, {"user": user, "database": database, "version": VERSION})

    def _cache(self) -> None:
        """INCR PREFIXcounter on a new connection, as the user Conveyor gives a provisioned namespace."""
        prefix = os.environ.get("REDIS_KEY_PREFIX", "")
        try:
            with Resp(
                os.environ.get("REDIS_HOST", "127.0.0.1"), int(os.environ.get("REDIS_PORT", "6379"))
            ) as redis:
                password, user = os.environ.get("REDIS_PASSWORD"), os.environ.get("REDIS_USERNAME")
                if password:
                    redis.call("AUTH", *([user] if user else []), password)
                if os.environ.get("REDIS_DB"):
                    redis.call("SELECT", os.environ["REDIS_DB"])
                count = redis.call("INCR", f"{prefix}counter")
        except (OSError, RespError) as exc:
            self._send(503, {"error": str(exc)})
            return
        self._send(200, {"count": count, "key": f"{prefix}counter", "user": user, "version": VERSION})

    def do_POST(self) -> None:
        raw = self._body()
        if self.path == "/_fault":
            try:
                changes = json.loads(raw or b"{}")
                if not isinstance(changes, dict):
                    raise ValueError("expected a JSON object")
            except ValueError as exc:
                self._send(400, {"error": f"bad fault request: {exc}"})
                return
            if changes.get("crash"):
                crash()
            self._send(200, FAULTS.update(changes))
            return
        if self.path == "/users":
            self._users(raw)
            return
        self._serve()

    def _serve(self) -> None:
        if self.command not in ("POST",):
            self._body()  # a GET may carry a body too; leave the connection clean
        with FAULTS.lock:
            FAULTS.served += 1
            served, crash_after = FAULTS.served, FAULTS.crash_after
            error_rate, latency_ms = FAULTS.error_rate, FAULTS.latency_ms
        if crash_after and served >= crash_after:
            crash()
        if latency_ms:
            time.sleep(latency_ms / 1000)
        if error_rate and random.random() < error_rate:
            self._send(500, {"error": "injected failure", "version": VERSION})
            return
        self._send(
            200,
            {"version": VERSION, "environment": ENVIRONMENT, "instance": INSTANCE, "path": self.path},
        )


def _read_schema() -> str | None:
    try:
        with open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "SCHEMA")) as fh:
            return fh.read().strip()
    except FileNotFoundError:
        return None


SCHEMA = _read_schema()
_INSERT = {
    "user_id": "INSERT INTO users (user_id, email) VALUES (%s, %s) RETURNING id",
    "both": "INSERT INTO users (user_id, account_id, email) VALUES (%s, %s, %s) RETURNING id",
    "account_id": "INSERT INTO users (account_id, email) VALUES (%s, %s) RETURNING id",
}
_SELECT = {
    "user_id": "SELECT id, user_id, email FROM users WHERE id = %s",
    "both": "SELECT id, COALESCE(account_id, user_id), email FROM users WHERE id = %s",
    "account_id": "SELECT id, account_id, email FROM users WHERE id = %s",
}


def main() -> None:
    load_defects(os.path.join(os.path.dirname(os.path.abspath(__file__)), "defects.json"))
    port = int(os.environ.get("PORT", "8080"))
    ThreadingHTTPServer.request_queue_size = 128  # the default backlog of 5 drops bursts of connections
    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    server.daemon_threads = True
    print(f"example app {VERSION} ({ENVIRONMENT}) listening on 127.0.0.1:{port}", flush=True)
    try:
        server.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


if __name__ == "__main__":
    main()
