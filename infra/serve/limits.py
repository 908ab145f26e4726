"""The request-size limit, before any route reads a byte: a body over the limit is answered 413 (JSON) and
nothing of it is kept anywhere.

A request that declares a Content-Length over the limit is refused at once; one that does not (chunked) is
counted as it comes, and when it passes the limit the route sees the client go away and its answer is
replaced by the 413. The rest of the body is read and dropped (up to ``DRAIN_BYTES``), so that a client still
sending gets the answer rather than a reset connection. The upload route checks the file's own size again.
"""

from __future__ import annotations

import json
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

DRAIN_BYTES = 64 << 20
FORM_SLACK = 1 << 20            # room for the multipart framing and the form's other fields


class BodyLimit:
    """ASGI middleware: bodies over ``upload_limit`` (and the form's framing) get a 413 with a JSON error body."""

    def __init__(self, app: ASGIApp, upload_limit: int) -> None:
        self.app, self.upload_limit, self.limit = app, upload_limit, upload_limit + FORM_SLACK

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers", [])).get(b"content-length", b"")
        if declared.isdigit() and int(declared) > self.limit:
            await self.refuse(receive, send, more=True)
            return
        state: dict[str, Any] = {"seen": 0, "over": False, "started": False}

        async def counted() -> Message:
            if state["over"]:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                state["seen"] += len(message.get("body", b""))
                if state["seen"] > self.limit:
                    state["over"] = True
                    state["more"] = message.get("more_body", False)
                    return {"type": "http.disconnect"}
            return message

        async def guarded(message: Message) -> None:
            if state["over"]:
                if message["type"] == "http.response.start" and not state["started"]:
                    state["started"] = True
                    await self.refuse(receive, send, more=state["more"])
                return
            state["started"] = state["started"] or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counted, guarded)
        except Exception:
            if not state["over"]:
                raise
            if not state["started"]:
                await self.refuse(receive, send, more=state["more"])

    async def refuse(self, receive: Receive, send: Send, more: bool) -> None:
        drained = 0
        while more and drained < DRAIN_BYTES:
            message = await receive()
            if message["type"] != "http.request":
                break
            drained += len(message.get("body", b""))
            more = message.get("more_body", False)
        body = json.dumps({"error": f"the request is larger than the upload limit of {self.upload_limit} bytes",
                           "hint": "`infra serve --max-upload` sets the limit"}).encode()
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                                (b"connection", b"close")]})
        await send({"type": "http.response.body", "body": body})
