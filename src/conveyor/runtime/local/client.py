"""LocalDriver: the server's side of the runtime protocol, talking to the agent over loopback HTTP.

Every call opens its own connection, so a restarted agent is simply reached again: the server
never has to notice that it went away.
"""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import httpx

from conveyor.credentials import write_private
from conveyor.errors import ConveyorError, StoreError, error_from_problem
from conveyor.runtime.desired import EnvironmentDesired
from conveyor.tls import client_context

DEFAULT_AGENT_PORT = 8469


class AgentUnavailable(StoreError):
    """The local agent does not answer."""

    title = "Runtime agent unavailable"
    slug = "agent-unavailable"


def agent_token_path(home: Path) -> Path:
    """Where the agent's bearer token lives (0600)."""
    return home / "agent.token"


def ensure_agent_token(home: Path) -> str:
    """The agent token, created on first use."""
    path = agent_token_path(home)
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        token = "cva_" + secrets.token_urlsafe(32)
        write_private(path, token + "\n")
        return token


def agent_url(home: Path) -> str:
    """CONVEYOR_AGENT_URL, else what `conveyor up` recorded, else the default loopback port."""
    if os.environ.get("CONVEYOR_AGENT_URL"):
        return os.environ["CONVEYOR_AGENT_URL"].rstrip("/")
    try:
        recorded = json.loads((home / "agent.json").read_text())
        return str(recorded["url"]).rstrip("/")
    except (FileNotFoundError, ValueError, KeyError, TypeError):
        return f"http://127.0.0.1:{DEFAULT_AGENT_PORT}"


class LocalDriver:
    """RuntimeDriver for the local agent."""

    def __init__(self, url: str, token: str, timeout: float = 30.0) -> None:
        self.url = url
        self._headers = {"authorization": f"Bearer {token}"}
        self._timeout = timeout

    @classmethod
    def for_home(cls, home: Path) -> LocalDriver:
        """The driver for the agent that belongs to this Conveyor home."""
        return cls(agent_url(home), ensure_agent_token(home))

    def _request(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            response = httpx.request(
                method,
                self.url + path,
                headers=self._headers,
                timeout=self._timeout,
                verify=client_context(),
                **kwargs,
            )
        except httpx.TransportError:
            raise AgentUnavailable(
                f"the runtime agent at {self.url} is not reachable",
                hint="start it with `conveyor up` (or `conveyor agent` in the foreground)",
            ) from None
        if response.is_success:
            return response.json()
        raise _agent_error(response)

    def apply(
        self, desired: EnvironmentDesired, secret_values: Mapping[str, str] | None = None
    ) -> dict[str, Any]:
        """PUT the environment's desired state, with the values of the secrets it names beside it."""
        body = {**desired.to_json(), "secret_values": dict(secret_values or {})}
        result: dict[str, Any] = self._request("PUT", f"/v1/environments/{desired.environment}", json=body)
        return result

    def observe(self, environment: str | None = None) -> dict[str, Any]:
        """GET observed state."""
        path = f"/v1/environments/{environment}" if environment else "/v1/environments"
        result: dict[str, Any] = self._request("GET", path)
        return result

    def metrics(self, environment: str, window_seconds: float) -> dict[str, Any]:
        """GET per-version statistics."""
        result: dict[str, Any] = self._request(
            "GET", f"/v1/environments/{environment}/metrics", params={"window": window_seconds}
        )
        return result

    def kill_instance(self, environment: str, instance_id: str) -> dict[str, Any]:
        """POST a SIGKILL of one instance (its key, as `observe` lists it)."""
        result: dict[str, Any] = self._request(
            "POST", f"/v1/environments/{environment}/instances/{instance_id}/kill"
        )
        return result

    def put_flags(self, environment: str, document: dict[str, Any]) -> dict[str, Any]:
        """PUT the environment's flagd document; the agent rewrites the file its instances read."""
        result: dict[str, Any] = self._request("PUT", f"/v1/environments/{environment}/flags", json=document)
        return result

    def logs(self, environment: str, lines: int, follow: bool) -> Iterator[str]:
        """Stream log lines from the agent."""
        params: dict[str, str | int] = {"lines": lines, "follow": str(follow).lower()}
        try:
            with httpx.stream(
                "GET",
                f"{self.url}/v1/environments/{environment}/logs",
                params=params,
                headers=self._headers,
                timeout=httpx.Timeout(self._timeout, read=None),
                verify=client_context(),
            ) as response:
                if not response.is_success:
                    response.read()
                    raise _agent_error(response)
                yield from response.iter_lines()
        except httpx.TransportError:
            raise AgentUnavailable(
                f"the runtime agent at {self.url} is not reachable",
                hint="start it with `conveyor up` (or `conveyor agent` in the foreground)",
            ) from None


def _agent_error(response: httpx.Response) -> ConveyorError:
    try:
        body = response.json()
    except ValueError:
        body = {}
    return error_from_problem(response.status_code, body)
