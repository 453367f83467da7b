"""uvicorn's HTTP/1.1 protocols with JSON answers for the requests its parser refuses.

A request the HTTP parser cannot parse never reaches the ASGI app: uvicorn answers it itself, in
plain text (``400 Invalid HTTP request received.``). The service promises JSON errors everywhere it
can, so these subclasses replace that one answer: 501 for a method the parser does not know
(httptools knows a fixed list of methods, ``FOO`` is not one), 400 for anything else malformed
(a bad request line, header or Content-Length). h11, the fallback parser, accepts any method token,
so an unknown method reaches the app there and gets its 405 with ``Allow``.
"""

from __future__ import annotations

import sys

import orjson

__all__ = ["protocol_class", "parser_error_response"]


def parser_error_response(status: int, message: str) -> bytes:
    """Return a complete HTTP/1.1 response with the JSON error body, closing the connection."""
    body = orjson.dumps({"error": message})
    reason = b"Not Implemented" if status == 501 else b"Bad Request"
    return b"".join([
        b"HTTP/1.1 %d %s\r\n" % (status, reason),
        b"content-type: application/json\r\n",
        b"content-length: %d\r\n" % len(body),
        b"connection: close\r\n\r\n",
        body,
    ])


def protocol_class() -> type:
    """Return the uvicorn HTTP protocol class to serve with: httptools' when installed, else h11's."""
    try:
        import httptools
        from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol as Base
    except ImportError:
        httptools = None
        from uvicorn.protocols.http.h11_impl import H11Protocol as Base

    class JsonErrorProtocol(Base):  # type: ignore[misc, valid-type]
        """uvicorn's protocol, answering the requests its parser refuses with JSON instead of plain text."""

        def send_400_response(self, msg: str) -> None:
            # uvicorn calls this inside its `except HttpParserError:` (httptools) or `except RemoteProtocolError:`
            # (h11), so the exception being handled says what was wrong
            exc = sys.exc_info()[1]
            if httptools is not None and isinstance(exc, httptools.HttpParserInvalidMethodError):
                status, message = 501, "method not implemented: the HTTP parser knows no such method"
            else:
                status, message = 400, f"invalid HTTP request (request line, header or framing): {exc or msg}"
            self.transport.write(parser_error_response(status, message))
            self.transport.close()

    return JsonErrorProtocol
