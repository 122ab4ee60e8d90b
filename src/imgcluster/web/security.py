"""Who may talk to the web app, and how much they may send: a token when it listens beyond this
machine, the Host header when it does not, and a cap on request bodies.

Pure ASGI middleware (no body buffering): a refused request never reaches a router, and an
oversized upload is cut off as it streams in, before anything is written to a temporary file."""

from __future__ import annotations

import hmac
import ipaddress
import json
import secrets
from collections.abc import Awaitable, Callable, MutableMapping
from http.cookies import CookieError, SimpleCookie
from typing import Any
from urllib.parse import parse_qs

from starlette.exceptions import HTTPException

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

COOKIE = "imgcluster_token"
DEFAULT_MAX_UPLOAD_MB = 25.0
LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1", "[::1]")


def is_loopback(host: str) -> bool:
    """Whether listening on ``host`` keeps the app to this machine."""
    if host.strip("[]") == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to anything


def new_token() -> str:
    return secrets.token_urlsafe(24)


async def _answer(send: Send, status: int, detail: str, headers: list[tuple[bytes, bytes]] = ()) -> None:  # type: ignore[assignment]
    body = json.dumps({"detail": detail}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            *headers]})
    await send({"type": "http.response.body", "body": body})


def _header(scope: Scope, name: bytes) -> str:
    for key, value in scope.get("headers", []):
        if key == name:
            return value.decode("latin-1")
    return ""


class TokenAuth:
    """Every request needs the token: ``Authorization: Bearer TOKEN``, or the cookie that a first
    visit to ``/?token=TOKEN`` sets (so the page, its images and its API calls work in a browser)."""

    def __init__(self, app: ASGIApp, token: str):
        self.app, self.token = app, token

    def _matches(self, given: str) -> bool:
        return bool(given) and hmac.compare_digest(given.encode(), self.token.encode())

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        authorization = _header(scope, b"authorization")
        bearer = authorization[7:].strip() if authorization.lower().startswith("bearer ") else ""
        cookie = SimpleCookie()
        try:
            cookie.load(_header(scope, b"cookie"))
        except CookieError:  # a malformed cookie header is no token
            cookie = SimpleCookie()
        from_cookie = cookie[COOKIE].value if COOKIE in cookie else ""
        from_query = parse_qs(scope.get("query_string", b"").decode("latin-1")).get("token", [""])[0]
        if self._matches(bearer) or self._matches(from_cookie):
            await self.app(scope, receive, send)
            return
        if not self._matches(from_query):
            await _answer(send, 401, "This imgcluster server needs its token: open the address `imgcluster serve` "
                          "printed (it ends in ?token=...), or send the header 'Authorization: Bearer TOKEN'.",
                          [(b"www-authenticate", b"Bearer")])
            return
        set_cookie = (f"{COOKIE}={self.token}; Path=/; HttpOnly; SameSite=Strict").encode()

        async def send_with_cookie(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = dict(message, headers=[*message.get("headers", []), (b"set-cookie", set_cookie)])
            await send(message)

        await self.app(scope, receive, send_with_cookie)


class LocalHostOnly:
    """Without a token, answer only requests addressed to this machine by name: a web page elsewhere
    cannot point a host name of its own at 127.0.0.1 (DNS rebinding) and read the images."""

    def __init__(self, app: ASGIApp, hosts: tuple[str, ...] = LOCAL_HOSTS):
        self.app, self.hosts = app, hosts

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            host = _header(scope, b"host")
            name = host.rsplit(":", 1)[0] if host.count(":") == 1 or host.startswith("[") else host
            if name.lower() not in self.hosts:
                await _answer(send, 421, f"This imgcluster server answers only requests for {', '.join(self.hosts[:2])} "
                              f"(this one was for {host!r}). Start it with --host and a token to reach it from elsewhere.")
                return
        await self.app(scope, receive, send)


class _TooLarge(HTTPException):
    """Raised while the body streams in; FastAPI turns it into the 413 answer."""


class BodyLimit:
    """Refuse request bodies over ``max_bytes`` with 413: at once when Content-Length says so,
    otherwise as soon as the streamed body passes the limit."""

    def __init__(self, app: ASGIApp, max_bytes: int):
        self.app, self.max_bytes = app, max_bytes

    def _message(self) -> str:
        return (f"The upload is larger than this server's limit of {self.max_bytes / 2**20:g} MB "
                "(imgcluster serve --max-upload-mb).")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = _header(scope, b"content-length")
        if length.isdigit() and int(length) > self.max_bytes:
            await _answer(send, 413, self._message())
            return
        received = 0
        started = False

        async def counted() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise _TooLarge(413, self._message())
            return message

        async def tracked(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counted, tracked)
        except _TooLarge:
            if not started:
                await _answer(send, 413, self._message())


# A client gets this long to finish sending a request's headers (from connecting, or from the end
# of the previous response); uvicorn itself waits for them forever, so a few slow sockets that never
# finish a request would hold the server's connections without limit.
HEADER_SECONDS = 15.0


def header_deadline_protocol() -> type:
    """uvicorn's h11 protocol, closing a connection whose next request has not begun (its headers
    complete) within ``HEADER_SECONDS``. Pass it as ``uvicorn.Config(http=...)``."""
    from uvicorn.protocols.http.h11_impl import H11Protocol

    class HeaderDeadlineH11(H11Protocol):  # type: ignore[misc]
        def connection_made(self, transport: Any) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._arm_header_deadline()

        def on_response_complete(self) -> None:
            super().on_response_complete()
            self._arm_header_deadline()

        def _arm_header_deadline(self) -> None:
            waiting_after = self.cycle  # a new request replaces the cycle: then the deadline is met
            self.loop.call_later(HEADER_SECONDS, self._check_header_deadline, waiting_after)

        def _check_header_deadline(self, waiting_after: Any) -> None:
            if self.cycle is waiting_after and not self.transport.is_closing():
                self.transport.close()

    return HeaderDeadlineH11
