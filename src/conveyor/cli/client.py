"""The CLI's API client: finds the server and token, and turns problem+json into ConveyorErrors."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from typing import Any

import httpx

from conveyor import __version__
from conveyor.credentials import read_credentials
from conveyor.errors import ClientError, ServerUnreachable, error_from_problem
from conveyor.settings import DEFAULT_HOST, DEFAULT_PORT, Settings
from conveyor.tls import client_context


def server_url(settings: Settings, explicit: str | None = None) -> str:
    """--url, else CONVEYOR_URL, else what `up` recorded, else the credentials, else the default."""
    if explicit:
        return explicit.rstrip("/")
    if os.environ.get("CONVEYOR_URL"):
        return os.environ["CONVEYOR_URL"].rstrip("/")
    try:
        recorded = json.loads(settings.server_file.read_text())
        if isinstance(recorded, dict) and recorded.get("url"):
            return str(recorded["url"]).rstrip("/")
    except (FileNotFoundError, ValueError):
        pass
    creds = _credentials(settings)
    if creds and creds.get("url"):
        return str(creds["url"]).rstrip("/")
    return f"http://{DEFAULT_HOST}:{DEFAULT_PORT}"


def _credentials(settings: Settings) -> dict[str, Any] | None:
    try:
        return read_credentials(settings.credentials_file)
    except (ValueError, OSError):
        raise ClientError(
            f"{settings.credentials_file} is not a valid credentials file",
            hint="delete it and restart the server on an empty store, or set CONVEYOR_TOKEN",
        ) from None


def api_token(settings: Settings) -> str | None:
    """CONVEYOR_TOKEN, else the token in the credentials file."""
    if os.environ.get("CONVEYOR_TOKEN"):
        return os.environ["CONVEYOR_TOKEN"].strip()
    creds = _credentials(settings)
    return str(creds["token"]) if creds and creds.get("token") else None


class Client:
    """A thin, synchronous wrapper over httpx for the Conveyor API."""

    def __init__(self, url: str, token: str | None, timeout: float = 30.0) -> None:
        self.url = url
        headers = {"user-agent": f"conveyor-cli/{__version__}"}
        if token:
            headers["authorization"] = f"Bearer {token}"
        self._http = httpx.Client(base_url=url, headers=headers, timeout=timeout, verify=client_context())

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        """Send a request; return decoded JSON or raise the server's error as a ConveyorError."""
        response = self._send(method, path, **kwargs)
        try:
            body = response.json() if response.content else None
        except ValueError:
            body = None
        if response.is_success:
            return body
        raise error_from_problem(response.status_code, body)

    def get_text(self, path: str, **kwargs: Any) -> str:
        """GET a plain-text resource; the server's error as a ConveyorError."""
        response = self._send("GET", path, **kwargs)
        if response.is_success:
            return response.text
        raise error_from_problem(response.status_code, _json_or_none(response))

    def stream_lines(self, path: str, **kwargs: Any) -> Iterator[str]:
        """GET a JSON Lines endpoint and yield its lines."""
        try:
            with self._http.stream("GET", path, **kwargs) as response:
                if not response.is_success:
                    response.read()
                    raise error_from_problem(response.status_code, _json_or_none(response))
                yield from response.iter_lines()
        except httpx.TransportError as exc:
            raise self._unreachable(exc) from None

    def _send(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            return self._http.request(method, path, **kwargs)
        except httpx.TransportError as exc:
            raise self._unreachable(exc) from None

    def _unreachable(self, exc: Exception) -> ServerUnreachable:
        reason = type(exc).__name__
        return ServerUnreachable(
            f"the Conveyor server at {self.url} is not reachable ({reason})",
            hint="start it with `conveyor up`, or point the CLI at it with --url / CONVEYOR_URL",
        )

    def get(self, path: str, **kwargs: Any) -> Any:
        return self.request("GET", path, **kwargs)

    def post(self, path: str, **kwargs: Any) -> Any:
        return self.request("POST", path, **kwargs)

    def patch(self, path: str, **kwargs: Any) -> Any:
        return self.request("PATCH", path, **kwargs)

    def delete(self, path: str, **kwargs: Any) -> Any:
        return self.request("DELETE", path, **kwargs)

    def close(self) -> None:
        self._http.close()


def _json_or_none(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None
