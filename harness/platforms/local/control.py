"""The local deployment's control channel: how tools outside the harness process ask for a rollout or a scale.

The supervisor listens on ``127.0.0.1`` (a free port, written to the state file as
``"control": {"port": P}``). A request is one JSON line, ``{"token": T, "op": OP, ...}``, with the
deployment's token (the state file's ``fault_token``: the file is readable by its owner only); the
answer is one JSON line, ``{"ok": true, ...}`` or ``{"ok": false, "error": "..."}``. Operations are
the deployment's (`harness.platforms.local.deployment.LocalDeployment.control_ops`): ``status``,
``rollout`` and ``scale``. `send_control` is the client; it imports nothing but the standard
library, so Chaos Toolkit activities can use it from their own process.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import socket
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from harness.errors import ConfigError, DeploymentError, HarnessError

__all__ = ["ControlServer", "send_control"]

_MAX_LINE = 2**20
Handler = Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]


class ControlServer:
    """Serves the control channel on the running loop; ``ops`` maps an operation to its handler."""

    def __init__(self, token: str, ops: Mapping[str, Handler], host: str = "127.0.0.1") -> None:
        self.token = token
        self.ops = dict(ops)
        self.host = host
        self.port: int | None = None
        self._server: asyncio.AbstractServer | None = None

    async def start(self) -> int:
        """Listen; return the port."""
        self._server = await asyncio.start_server(self._serve, self.host, 0, limit=_MAX_LINE)
        self.port = self._server.sockets[0].getsockname()[1]
        return self.port

    async def close(self) -> None:
        """Stop listening."""
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    def close_now(self) -> None:
        """Stop listening without waiting (on the loop's thread; a forced teardown)."""
        if self._server is not None:
            self._server.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            line = await reader.readline()
            answer = await self._answer(line)
            writer.write((json.dumps(answer, default=str) + "\n").encode())
            await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError):
            pass
        finally:
            writer.close()

    async def _answer(self, line: bytes) -> dict[str, Any]:
        try:
            request = json.loads(line)
        except ValueError:
            return {"ok": False, "error": "a request is one JSON object on one line"}
        if not isinstance(request, dict):
            return {"ok": False, "error": "a request is one JSON object on one line"}
        if not hmac.compare_digest(str(request.pop("token", "")).encode(), self.token.encode()):
            return {"ok": False, "error": "wrong or missing token (the state file's fault_token)"}
        op = request.pop("op", None)
        handler = self.ops.get(str(op))
        if handler is None:
            return {"ok": False, "error": f"op={op!r}: unknown operation; choose one of {', '.join(self.ops)}"}
        try:
            return {"ok": True, **await handler(request)}
        except ConfigError as exc:  # rebuilt by the client as the same error
            return {"ok": False, "error": str(exc), "config": {"field": exc.field, "value": exc.value, "reason": exc.reason}}
        except HarnessError as exc:
            return {"ok": False, "error": str(exc)}


def send_control(state: Mapping[str, Any], op: str, timeout_s: float = 10.0, **fields: Any) -> dict[str, Any]:
    """Send ``op`` with ``fields`` to the deployment a state file describes; return its answer.

    Raises DeploymentError when the deployment has no control channel, cannot be reached, or
    refuses the request (the message is its error), ConfigError for a value it refuses.
    """
    control = state.get("control") or {}
    port = control.get("port") if isinstance(control, Mapping) else None
    if not port:
        raise DeploymentError("the deployment's state file names no control port (only the local platform has one)")
    request = {"token": state.get("fault_token") or "", "op": op, **fields}
    try:
        with socket.create_connection(("127.0.0.1", int(port)), timeout=timeout_s) as sock:
            sock.sendall((json.dumps(request) + "\n").encode())
            data = b""
            while not data.endswith(b"\n"):
                chunk = sock.recv(65536)
                if not chunk:
                    break
                data += chunk
    except OSError as exc:
        raise DeploymentError(f"cannot reach the deployment's control channel on port {port}: {exc}") from exc
    try:
        answer = json.loads(data)
    except ValueError:
        raise DeploymentError(f"the control channel answered {data[:200]!r}") from None
    if not answer.get("ok"):
        config = answer.get("config")
        if isinstance(config, dict):
            raise ConfigError(str(config.get("field")), config.get("value"), str(config.get("reason")))
        raise DeploymentError(str(answer.get("error")))
    return answer
