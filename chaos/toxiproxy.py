"""A small, strict client for one Toxiproxy server, built on toxiproxy-python.

toxiproxy-python keeps the server's host and port as class attributes, sends no
HTTP timeouts, updates with POST where current servers want PATCH, cannot
update a toxic, and maps only 400, 404 and 409 to exceptions. This module gives
each server its own API consumer class, puts a timeout on every call, sends
PATCH for updates, and turns every failure into a `ToxiproxyError` that names
the call and what the server said.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

import requests
from toxiproxy.api import APIConsumer, validate_response
from toxiproxy.exceptions import InvalidToxic, NotFound, ProxyExists

from chaos.errors import ToxiproxyError

logger = logging.getLogger(__name__)

TOXIC_TYPES = frozenset(
    {
        "latency",
        "bandwidth",
        "slow_close",
        "timeout",
        "reset_peer",
        "slicer",
        "limit_data",
    }
)


# toxiproxy-python turns these statuses into exceptions and drops the status.
_REFUSALS: dict[type[Exception], int] = {
    InvalidToxic: 400,
    NotFound: 404,
    ProxyExists: 409,
}


def _text(body: Any) -> str:
    if isinstance(body, bytes):
        body = body.decode("utf-8", "replace")
    return str(body).strip()


@dataclass(frozen=True)
class ProxyState:
    name: str
    listen: str
    upstream: str
    enabled: bool
    toxics: tuple[dict[str, Any], ...]


def _state(raw: dict[str, Any]) -> ProxyState:
    return ProxyState(
        name=raw["name"],
        listen=raw["listen"],
        upstream=raw["upstream"],
        enabled=bool(raw["enabled"]),
        toxics=tuple(raw.get("toxics") or ()),
    )


class ToxiproxyAPI:
    """The HTTP API of one Toxiproxy server."""

    def __init__(self, host: str, port: int, timeout: float = 5.0):
        self.host = host
        self.port = port
        self.timeout = timeout

        # toxiproxy-python reads host and port from the class: one class each.
        self._consumer: type[APIConsumer] = type(
            f"APIConsumer_{port}", (APIConsumer,), {"host": host, "port": port}
        )

    def __repr__(self) -> str:
        return f"ToxiproxyAPI({self.host}:{self.port})"

    def _call(self, method: str, path: str, body: Any = None) -> Any:
        what = f"{method} {path}"
        try:
            if method == "GET":
                response = self._consumer.get(path, timeout=self.timeout)
            elif method == "POST":
                response = self._consumer.post(path, json=body, timeout=self.timeout)
            elif method == "DELETE":
                response = self._consumer.delete(path, timeout=self.timeout)
            else:
                url = f"http://{self.host}:{self.port}{path}"
                response = validate_response(
                    requests.request(method, url, json=body, timeout=self.timeout)
                )
        except (ProxyExists, NotFound, InvalidToxic) as exc:
            status = _REFUSALS[type(exc)]
            detail = _text(exc.args[0] if exc.args else b"")
            raise ToxiproxyError(
                f"Toxiproxy at {self.host}:{self.port} refused {what}: "
                f"HTTP {status} {detail}"
            ) from exc
        except requests.RequestException as exc:
            raise ToxiproxyError(
                f"Toxiproxy at {self.host}:{self.port} did not answer {what}: {exc}"
            ) from exc
        if response.status_code >= 400:
            raise ToxiproxyError(
                f"Toxiproxy at {self.host}:{self.port} failed {what}: "
                f"HTTP {response.status_code} {response.text.strip()}"
            )
        if response.status_code == 204 or not response.content:
            return None
        return response.json()

    def wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.version()
                return
            except ToxiproxyError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.01)

    def version(self) -> str:
        url = f"http://{self.host}:{self.port}/version"
        try:
            response = requests.get(url, timeout=self.timeout)
        except requests.RequestException as exc:
            raise ToxiproxyError(
                f"Toxiproxy at {self.host}:{self.port} did not answer: {exc}"
            ) from exc
        return response.text.strip()

    def proxies(self) -> dict[str, ProxyState]:
        raw = self._call("GET", "/proxies")
        return {name: _state(value) for name, value in raw.items()}

    def proxy(self, name: str) -> ProxyState:
        return _state(self._call("GET", f"/proxies/{name}"))

    def create_proxy(
        self, name: str, listen: str, upstream: str, enabled: bool = True
    ) -> ProxyState:
        body = {
            "name": name,
            "listen": listen,
            "upstream": upstream,
            "enabled": enabled,
        }
        return _state(self._call("POST", "/proxies", body))

    def delete_proxy(self, name: str) -> None:
        self._call("DELETE", f"/proxies/{name}")

    def set_enabled(self, name: str, enabled: bool) -> ProxyState:
        return _state(self._call("PATCH", f"/proxies/{name}", {"enabled": enabled}))

    def add_toxic(
        self,
        proxy: str,
        kind: str,
        attributes: dict[str, Any],
        *,
        name: str | None = None,
        stream: str = "downstream",
        toxicity: float = 1.0,
    ) -> dict[str, Any]:
        if kind not in TOXIC_TYPES:
            raise ToxiproxyError(
                f"unknown toxic type {kind!r}; expected one of {sorted(TOXIC_TYPES)}"
            )
        if stream not in ("upstream", "downstream"):
            raise ToxiproxyError(
                f"toxic stream must be 'upstream' or 'downstream', not {stream!r}"
            )
        body = {
            "name": name or f"{kind}_{stream}",
            "type": kind,
            "stream": stream,
            "toxicity": toxicity,
            "attributes": attributes,
        }
        result: dict[str, Any] = self._call("POST", f"/proxies/{proxy}/toxics", body)
        return result

    def update_toxic(
        self, proxy: str, name: str, attributes: dict[str, Any]
    ) -> dict[str, Any]:
        body = {"attributes": attributes}
        result: dict[str, Any] = self._call(
            "PATCH", f"/proxies/{proxy}/toxics/{name}", body
        )
        return result

    def remove_toxic(self, proxy: str, name: str) -> None:
        self._call("DELETE", f"/proxies/{proxy}/toxics/{name}")

    def toxics(self, proxy: str) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self._call("GET", f"/proxies/{proxy}/toxics")
        return result

    def reset(self) -> None:
        """Enable every proxy and remove every toxic."""
        self._call("POST", "/reset")
