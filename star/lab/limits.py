"""The request-body limit: a body larger than ``coordinator.max_body_bytes`` is a 413.

Every JSON message of the API is small (the largest, a result, is a few kB per context); a body
of many megabytes is a broken or hostile client, and parsing it would hold a worker and memory.
A declared ``Content-Length`` over the limit is refused before a byte is read; a chunked body
is counted as it arrives and refused when it passes the limit. Artifact uploads are exempt:
that route streams to disk under its own limit (``coordinator.max_artifact_bytes``).
"""

from __future__ import annotations

import json
from collections.abc import Callable

from fastapi import HTTPException, status
from starlette.types import ASGIApp, Message, Receive, Scope, Send


def too_large(limit: int, setting: str = "coordinator.max_body_bytes") -> str:
    return f"the request body is larger than {limit} bytes ({setting})"


class BodyLimit:
    """Pure ASGI middleware; ``exempt(scope)`` names the routes that enforce their own limit."""

    def __init__(self, app: ASGIApp, *, max_bytes: int, exempt: Callable[[Scope], bool]) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.exempt = exempt

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or self.exempt(scope):
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.max_bytes):
            await self._refuse(send)
            return
        received = 0

        async def counted() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    # raised inside the app's body read: FastAPI answers it as a 413
                    raise HTTPException(status.HTTP_413_CONTENT_TOO_LARGE,
                                        detail=too_large(self.max_bytes))
            return message

        await self.app(scope, counted, send)

    async def _refuse(self, send: Send) -> None:
        body = json.dumps({"detail": too_large(self.max_bytes)}).encode()
        await send({"type": "http.response.start", "status": status.HTTP_413_CONTENT_TOO_LARGE,
                    "headers": [(b"content-type", b"application/json"),
                                (b"content-length", str(len(body)).encode()),
                                (b"connection", b"close")]})
        await send({"type": "http.response.body", "body": body})
