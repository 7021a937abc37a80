"""The local agent: persists desired state, runs instances (Supervisor) and routes traffic (Router).

Started by `conveyor up` next to the server, or alone with `conveyor agent`. It keeps serving with
its last desired state when the server is gone, and restores instances and routes from
`agent/desired.json` when it restarts. The server reaches it only through `LocalDriver`.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any

from conveyor.credentials import write_private
from conveyor.errors import InvalidRequest, NotFound
from conveyor.runtime.desired import EnvironmentDesired, VersionDesired
from conveyor.runtime.local.bundle import unpack
from conveyor.runtime.local.instance import HealthCheck, InstanceSpec
from conveyor.runtime.local.instance_process import LOOPBACK
from conveyor.runtime.local.metrics import MetricsRegistry
from conveyor.runtime.local.router import Router
from conveyor.runtime.local.split import Backend, Fault, RouteTable
from conveyor.runtime.local.supervisor import Supervisor
from conveyor.spec.fields import NAME_RULE, is_valid_name

log = logging.getLogger("conveyor.agent")


def _command(command: tuple[str, ...]) -> tuple[str, ...]:
    # a bundle's `python` means the interpreter Conveyor runs on: Debian has no bare `python`
    if command and command[0] in ("python", "python3"):
        return (sys.executable, *command[1:])
    return command


class Agent:
    """Owns the desired state of every environment on this machine and makes it real."""

    def __init__(self, home: Path, *, router_host: str = "127.0.0.1", tick: float = 0.1) -> None:
        self.home = home
        self.state_dir = home / "agent"
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.bundle_dir = self.state_dir / "bundles"
        self.router_host = router_host
        self.metrics = MetricsRegistry()
        self.supervisor = Supervisor(
            self.state_dir / "logs", tick=tick, on_change=self._push_tables, in_flight=self._in_flight
        )
        self.routers: dict[str, Router] = {}
        self.desired: dict[str, EnvironmentDesired] = {}
        self.workdirs: dict[str, Path] = {}
        self.errors: dict[str, str] = {}
        self.secret_values: dict[str, str] = {}
        """Secret reference → value, for the references some desired state names (ADR 0010)."""
        self._lock = asyncio.Lock()

    @property
    def desired_file(self) -> Path:
        return self.state_dir / "desired.json"

    @property
    def secrets_file(self) -> Path:
        return self.state_dir / "secrets.json"

    def _load(self) -> None:
        try:
            self.secret_values = {
                str(k): str(v) for k, v in json.loads(self.secrets_file.read_text()).items()
            }
        except FileNotFoundError:
            pass
        except (ValueError, AttributeError):
            log.error(
                "%s is unreadable; environments that need secrets wait for the server", self.secrets_file
            )
        try:
            raw = json.loads(self.desired_file.read_text())
        except FileNotFoundError:
            return
        for name, data in raw.items():
            try:
                self.desired[name] = EnvironmentDesired.from_json(data)
            except InvalidRequest as exc:
                self.errors[name] = f"persisted desired state is unreadable: {exc.detail}"

    def _save(self) -> None:
        data = {name: d.to_json() for name, d in self.desired.items()}
        needed = set().union(*(d.secret_refs() for d in self.desired.values()))
        self.secret_values = {ref: v for ref, v in self.secret_values.items() if ref in needed}
        # secrets first: a desired state on disk never names a value the agent cannot find again
        write_private(self.secrets_file, json.dumps(self.secret_values) + "\n")
        write_private(self.desired_file, json.dumps(data, indent=2) + "\n")

    async def start(self) -> None:
        """Restore the persisted desired state and start serving it."""
        self._load()
        await self.supervisor.start()
        async with self._lock:
            for name, desired in list(self.desired.items()):
                try:
                    await self._unpack(desired)
                except InvalidRequest as exc:
                    self.errors[name] = exc.detail
            await self._reconcile()
        log.info("agent restored %d environment(s)", len(self.desired))

    async def stop(self) -> None:
        """Stop routing (draining in-flight requests), then stop every instance."""
        for router in self.routers.values():
            await router.stop(drain_timeout=5.0)
        self.routers.clear()
        await self.supervisor.stop()

    async def _unpack(self, desired: EnvironmentDesired) -> None:
        for version in desired.versions:
            if version.digest in self.workdirs:
                continue
            try:
                path = await asyncio.to_thread(
                    unpack, Path(version.bundle_path), version.digest, self.bundle_dir
                )
            except FileNotFoundError:
                raise InvalidRequest(
                    f"bundle of {desired.service} {version.version} is missing at {version.bundle_path}",
                    hint="register the artifact again",
                ) from None
            self.workdirs[version.digest] = path

    async def put(
        self, desired: EnvironmentDesired, secret_values: dict[str, str] | None = None
    ) -> dict[str, Any]:
        """Make `desired` the environment's state: verify bundles, persist, then reconcile.

        `secret_values` carries the value of each secret reference the desired state names (the
        agent keeps those it already has, so a re-apply may leave them out).
        """
        desired.validate()
        async with self._lock:
            missing = sorted(desired.secret_refs() - set(self.secret_values) - set(secret_values or {}))
            if missing:
                raise InvalidRequest(
                    f"{desired.environment}: the desired state names secrets whose values were not sent: "
                    f"{', '.join(missing)}",
                    hint="the server sends them with the desired state; apply through the server",
                )
            await self._unpack(desired)  # a tampered bundle fails here, before anything changes
            self.secret_values.update(secret_values or {})
            self.desired[desired.environment] = desired
            self.errors.pop(desired.environment, None)
            self._save()
            await self._reconcile()
        return self.observe(desired.environment)

    async def remove(self, environment: str) -> None:
        """Stop everything of an environment and forget it."""
        async with self._lock:
            if self.desired.pop(environment, None) is None:
                raise _nothing_runs(environment)
            self._save()
            await self._reconcile()

    async def kill_instance(self, environment: str, key: str) -> dict[str, Any]:
        """SIGKILL one instance of an environment (chaos); the supervisor restarts it as after a crash."""
        if environment not in self.desired:
            raise _nothing_runs(environment)
        found = [i for i in self.supervisor.instances() if i.key == key and i.environment == environment]
        if not found:
            keys = ", ".join(i.key for i in self.supervisor.instances() if i.environment == environment)
            raise NotFound(
                f"instance {key} does not run in environment '{environment}'",
                hint=f"instances there: {keys or 'none'}",
            )
        await self.supervisor.kill(key)
        return {"environment": environment, "instance": key, "pid": found[-1].pid, "signal": "SIGKILL"}

    def flags_file(self, environment: str) -> Path:
        """Where an environment's flagd document lives: the file its instances read their flags from."""
        return (self.state_dir / "flags" / f"{environment}.flagd.json").absolute()

    def put_flags(self, environment: str, document: dict[str, Any]) -> dict[str, Any]:
        """Replace the environment's flagd document atomically (0600); instances re-read it, none restarts."""
        if not is_valid_name(environment):
            raise InvalidRequest(f"'{environment}' is not an environment name", hint=NAME_RULE)
        if not isinstance(document.get("flags"), dict):
            raise InvalidRequest("a flagd document needs a flags object", hint="send what the server exports")
        text = json.dumps(document, indent=2, sort_keys=True) + "\n"
        path = self.flags_file(environment)
        # synchronous on purpose: no other request of this event loop can interleave a half-written file
        write_private(path, text)
        digest = hashlib.sha256(text.encode()).hexdigest()
        count = len(document["flags"])
        return {"environment": environment, "path": str(path), "flags": count, "sha256": digest}

    def _specs(self) -> list[InstanceSpec]:
        specs: list[InstanceSpec] = []
        for desired in self.desired.values():
            health = HealthCheck(**asdict(desired.health))
            for version in desired.versions:
                workdir = self.workdirs.get(version.digest)
                if workdir is None:
                    continue
                for index in range(version.instances):
                    specs.append(
                        InstanceSpec(
                            environment=desired.environment,
                            service=desired.service,
                            version=version.version,
                            index=index,
                            command=_command(desired.command),
                            workdir=workdir,
                            env=self._instance_env(desired, version),
                            health=health,
                            port_env=desired.port_env,
                        )
                    )
        return specs

    def _instance_env(self, desired: EnvironmentDesired, version: VersionDesired) -> dict[str, str]:
        """Configuration, then secret values, then where to read feature flags."""
        env = dict(desired.env if version.env is None else version.env)
        refs = desired.secrets if version.secrets is None else version.secrets
        env.update({name: self.secret_values[ref] for name, ref in refs.items() if ref in self.secret_values})
        env.update(self._flag_env(desired.environment))
        return env

    def _flag_env(self, environment: str) -> dict[str, str]:
        path = str(self.flags_file(environment))
        # FLAGD_OFFLINE_FLAG_SOURCE_PATH: OpenFeature's flagd providers read this file in offline mode
        return {"FLAGD_OFFLINE_FLAG_SOURCE_PATH": path, "CONVEYOR_FLAGS_FILE": path}

    def redact(self, text: str) -> str:
        """`text` with every secret value an instance runs with replaced by ***."""
        for value in self.secret_values.values():
            if len(value) >= 4:
                text = text.replace(value, "***")
        return text

    def _redacted(self, instance: dict[str, Any]) -> dict[str, Any]:
        tail = instance.get("output_tail")
        if tail:
            instance["output_tail"] = [self.redact(str(line)) for line in tail]
        return instance

    async def _reconcile(self) -> None:
        await self.supervisor.apply(self._specs())
        for name in list(self.routers):
            desired = self.desired.get(name)
            if desired is None or desired.router_port != self.routers[name].port:
                await self.routers.pop(name).stop(drain_timeout=5.0)
        for name, desired in self.desired.items():
            if desired.router_port and name not in self.routers:
                router = Router(name, self.router_host, desired.router_port, self.metrics)
                try:
                    await router.start()
                except OSError as exc:
                    self.errors[name] = f"router cannot listen on port {desired.router_port}: {exc.strerror}"
                    continue
                self.routers[name] = router
        self._push_tables()

    def _table(self, desired: EnvironmentDesired) -> RouteTable:
        backends = tuple(
            Backend(
                version=v.version,
                weight_bp=v.weight_bp,
                endpoints=tuple(self.supervisor.ready_endpoints(desired.environment, v.version)),
                fault=Fault(**asdict(v.fault)) if v.fault else None,
            )
            for v in desired.versions
        )
        return RouteTable(desired.environment, backends, sticky=desired.sticky)

    def _push_tables(self) -> None:
        for name, router in self.routers.items():
            desired = self.desired.get(name)
            if desired is not None:
                router.update(self._table(desired))

    def _in_flight(self, port: int) -> int:
        endpoint = (LOOPBACK, port)
        return sum(router.in_flight(endpoint) for router in self.routers.values())

    def observe(self, environment: str | None = None) -> dict[str, Any]:
        """Desired and actual state: instances, router port and weights, errors."""
        names = [environment] if environment else list(self.desired)
        if environment and environment not in self.desired:
            raise _nothing_runs(environment)
        instances = self.supervisor.instances()
        result: dict[str, Any] = {}
        for name in names:
            desired = self.desired[name]
            router = self.routers.get(name)
            table = self._table(desired)
            result[name] = {
                "service": desired.service,
                "desired": desired.to_json(),
                "router": {
                    "port": router.port if router else None,
                    "listening": router is not None,
                    "backends": [
                        {
                            "version": b.version,
                            "weight_bp": b.weight_bp,
                            "endpoints": [list(e) for e in b.endpoints],
                        }
                        for b in table.backends
                    ],
                },
                "instances": [self._redacted(_instance_json(i)) for i in instances if i.environment == name],
                "error": self.errors.get(name),
            }
        return result

    def window(self, environment: str, seconds: float) -> dict[str, Any]:
        """Per-version statistics over the last `seconds`."""
        if environment not in self.desired:
            raise _nothing_runs(environment)
        versions = [v.version for v in self.desired[environment].versions]
        # "" labels requests answered before a version was chosen (400, 413, 503): not a version
        versions += [v for v in self.metrics.versions(environment) if v and v not in versions]
        return {v: asdict(self.metrics.window(environment, v, seconds)) for v in versions}

    def log_files(self, environment: str) -> list[tuple[str, Path]]:
        """(label, path) of each instance's log file in an environment."""
        if environment not in self.desired:
            raise _nothing_runs(environment)
        files: list[tuple[str, Path]] = []
        base = self.state_dir / "logs" / environment
        for path in sorted(base.glob("*.log")):
            files.append((path.stem, path))
        return files


def _instance_json(status: Any) -> dict[str, Any]:
    data = asdict(status) if hasattr(status, "__dataclass_fields__") else dict(vars(status))
    return {k: (str(v) if isinstance(v, Path) else v) for k, v in data.items()}


def _nothing_runs(environment: str) -> NotFound:
    return NotFound(
        f"environment '{environment}' runs nothing on this agent",
        hint=f"deploy something first: conveyor deploy SERVICE VERSION --env {environment}",
    )
