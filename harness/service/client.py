"""A small synchronous client of the reference service (standard library only; no torch, no event loop).

For control-plane calls from tests, platforms and chaos code: health, inference, metrics and the
fault hooks. Connection failures and timeouts raise `ServiceUnreachable`; refused requests raise
`ServiceRequestError` carrying the HTTP status and the service's error text, except `infer`, which
returns the status so a caller can count failures itself.
"""

from __future__ import annotations

import http.client
import json
import re
import time
import urllib.error
import urllib.request
from typing import Any

from harness.errors import HarnessError

__all__ = [
    "ServiceUnreachable",
    "ServiceRequestError",
    "request_json",
    "infer",
    "is_live",
    "is_ready",
    "wait_ready",
    "inject_fault",
    "list_faults",
    "clear_faults",
    "scrape_metrics",
]


class ServiceUnreachable(HarnessError):
    """The service did not answer (connection refused or reset, timeout)."""


class ServiceRequestError(HarnessError):
    """The service answered with an error status; ``status`` and ``error`` hold its reply."""

    def __init__(self, method: str, url: str, status: int, error: str) -> None:
        self.status = status
        self.error = error
        super().__init__(f"{method} {url} answered {status}: {error}")


def _decode(raw: bytes) -> Any:
    if not raw:
        return {}
    try:
        return json.loads(raw)
    except ValueError:
        return {"error": raw.decode("utf-8", "replace")[:500]}


def request_json(
    method: str, url: str, body: Any = None, headers: dict[str, str] | None = None, timeout_s: float = 5.0
) -> tuple[int, Any]:
    """Return ``(status, decoded JSON body)`` for any status; raise ServiceUnreachable if no answer came."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method, headers={"content-type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            return response.status, _decode(response.read())
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, _decode(exc.read())
    except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
        reason = getattr(exc, "reason", exc)
        raise ServiceUnreachable(f"{method} {url}: no answer within {timeout_s} s: {reason}") from exc


def _checked(method: str, url: str, body: Any = None, headers: dict[str, str] | None = None, timeout_s: float = 5.0) -> Any:
    status, payload = request_json(method, url, body, headers, timeout_s)
    if status != 200:
        error = payload.get("error", payload) if isinstance(payload, dict) else payload
        raise ServiceRequestError(method, url, status, str(error))
    return payload


def infer(base_url: str, model: str, body: dict[str, Any], timeout_s: float = 10.0) -> tuple[int, dict[str, Any]]:
    """POST an Open Inference Protocol v2 request; return ``(status, response or {"error": ...})``.

    Raises ServiceUnreachable when the service does not answer within ``timeout_s``.
    """
    return request_json("POST", f"{base_url.rstrip('/')}/v2/models/{model}/infer", body, timeout_s=timeout_s)


def is_live(base_url: str, timeout_s: float = 1.0) -> bool:
    """Return True when liveness answers 200 (False for another status or no answer)."""
    try:
        return request_json("GET", f"{base_url.rstrip('/')}/v2/health/live", timeout_s=timeout_s)[0] == 200
    except ServiceUnreachable:
        return False


def is_ready(base_url: str, timeout_s: float = 1.0) -> bool:
    """Return True when readiness answers 200 (False for another status or no answer)."""
    try:
        return request_json("GET", f"{base_url.rstrip('/')}/v2/health/ready", timeout_s=timeout_s)[0] == 200
    except ServiceUnreachable:
        return False


def wait_ready(base_url: str, timeout_s: float, poll_s: float = 0.1) -> float:
    """Poll readiness until 200; return the seconds waited. Raise HarnessError on timeout, with the last reason."""
    started = time.monotonic()
    last = "no answer yet"
    url = f"{base_url.rstrip('/')}/v2/health/ready"
    while True:
        try:
            status, payload = request_json("GET", url, timeout_s=max(0.5, min(2.0, timeout_s)))
            if status == 200:
                return time.monotonic() - started
            last = f"{status}: {payload.get('error', payload) if isinstance(payload, dict) else payload}"
        except ServiceUnreachable as exc:
            last = str(exc)
        if time.monotonic() - started >= timeout_s:
            raise HarnessError(f"{base_url} not ready within {timeout_s} s (last: {last})")
        time.sleep(poll_s)


def _auth(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


def inject_fault(base_url: str, kind: str, token: str, params: dict[str, Any] | None = None, timeout_s: float = 5.0) -> dict[str, Any]:
    """Inject a fault (POST /v2/faults/{kind}); return the service's description of it.

    Raises ServiceRequestError (400 bad params, 401/403 auth, 404 unknown kind) or ServiceUnreachable.
    """
    return _checked("POST", f"{base_url.rstrip('/')}/v2/faults/{kind}", params or {}, _auth(token), timeout_s)


def list_faults(base_url: str, token: str, timeout_s: float = 5.0) -> list[dict[str, Any]]:
    """Return the active faults (GET /v2/faults). Raises ServiceRequestError or ServiceUnreachable."""
    return _checked("GET", f"{base_url.rstrip('/')}/v2/faults", None, _auth(token), timeout_s)["faults"]


def clear_faults(base_url: str, token: str, timeout_s: float = 5.0) -> dict[str, Any]:
    """End every active fault (DELETE /v2/faults); return ``{"cleared": n}``. Raises as `inject_fault`."""
    return _checked("DELETE", f"{base_url.rstrip('/')}/v2/faults", None, _auth(token), timeout_s)


_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)$")


def scrape_metrics(base_url: str, timeout_s: float = 5.0) -> dict[str, float]:
    """Return GET /metrics as ``{'name{labels}': value}`` (labels exactly as exposed). Raises like `inject_fault`."""
    url = f"{base_url.rstrip('/')}/metrics"
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:
            text = response.read().decode()
    except urllib.error.HTTPError as exc:
        raise ServiceRequestError("GET", url, exc.code, exc.reason) from exc
    except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
        raise ServiceUnreachable(f"GET {url}: no answer within {timeout_s} s: {getattr(exc, 'reason', exc)}") from exc
    samples = {}
    for line in text.splitlines():
        match = _SAMPLE.match(line)
        if match:
            samples[match.group(1) + (match.group(2) or "")] = float(match.group(3))
    return samples
