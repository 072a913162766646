"""``llmos dashboard ADDRESS``: a live web page of a node, served locally.

One reader thread asks the node's ``llmos.observer`` for a snapshot every ``interval`` seconds
(one ask per interval, however many pages are open); the page (plain JavaScript shipped in
``static/``, nothing fetched from elsewhere) receives each snapshot as a server-sent event and
draws the supervision tree, the pools, the model actors, the tokens per agent, the peers and
the running chats' transcripts as their turns come.

It binds 127.0.0.1 by default. Any other bind needs a token: every request must then carry
``?token=TOKEN`` (the page passes it on to its event stream).
"""

from __future__ import annotations

import asyncio
import hmac
import importlib.resources
import json
import logging
import socket
import threading
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

from llmos.actors import LlmosError

from ._metrics import is_loopback
from ._observe import NodeWatcher

__all__ = ["Dashboard", "SnapshotFeed", "build_app", "check_bind", "run_dashboard"]

log = logging.getLogger("llmos.cli")

_STATIC = {
    "/": ("dashboard.html", "text/html; charset=utf-8"),
    "/dashboard.js": ("dashboard.js", "text/javascript; charset=utf-8"),
    "/dashboard.css": ("dashboard.css", "text/css; charset=utf-8"),
}


class SnapshotFeed:
    """The newest snapshot, read by one thread every ``interval`` seconds.

    Args:
        read: returns a snapshot (e.g. ``NodeWatcher.snapshot``); an ``LlmosError`` it raises
            is kept as the feed's ``error`` and reading goes on.
        interval: seconds between two reads.
    """

    def __init__(self, read: Callable[[], dict[str, Any]], interval: float = 0.5) -> None:
        self.read = read
        self.interval = interval
        self.version = 0
        self.latest: dict[str, Any] = {"snapshot": None, "error": "not read yet"}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="llmos:dashboard-feed")

    def start(self) -> SnapshotFeed:
        """Start reading (returns self)."""
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                latest: dict[str, Any] = {"snapshot": self.read(), "error": ""}
            except LlmosError as exc:
                latest = {
                    "snapshot": self.latest["snapshot"],
                    "error": f"{type(exc).__name__}: {exc}",
                }
            self.latest = latest  # one reference swap: readers see the old or the new whole
            self.version += 1
            self._stop.wait(self.interval)

    def close(self) -> None:
        """Stop reading (waits for the thread)."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(10.0)


def check_bind(bind: str, token: str | None) -> None:
    """Refuse a non-loopback ``bind`` without a token.

    Raises:
        LlmosError: ``bind`` is not a loopback address and ``token`` is empty.
    """
    if not is_loopback(bind) and not token:
        raise LlmosError(
            f"--bind {bind} is not a loopback address: anyone who reaches it would read "
            "the node; give --token TOKEN (a long random string), or bind 127.0.0.1"
        )


def _asset(name: str) -> bytes:
    return importlib.resources.files("llmos.cli").joinpath("static", name).read_bytes()


def build_app(feed: SnapshotFeed, address: str, token: str | None = None) -> Any:
    """The Starlette app: ``/`` (the page), its script and style, ``/snapshot`` (JSON) and
    ``/events`` (server-sent events, one per new snapshot)."""
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
    from starlette.routing import Route

    def allowed(request: Request) -> bool:
        if token is None:
            return True
        given = request.query_params.get("token", "")
        return hmac.compare_digest(given.encode(), token.encode())

    def refused() -> Response:
        return PlainTextResponse("a token is needed: open the URL llmos dashboard printed\n", 403)

    async def static(request: Request) -> Response:
        if not allowed(request):
            return refused()
        name, media = _STATIC[request.url.path]
        headers = {"Cache-Control": "no-store"}
        return Response(_asset(name), media_type=media, headers=headers)

    async def snapshot(request: Request) -> Response:
        if not allowed(request):
            return refused()
        return JSONResponse({"address": address, **feed.latest})

    async def events(request: Request) -> Response:
        if not allowed(request):
            return refused()

        async def stream() -> AsyncIterator[str]:
            seen = -1
            quiet_since = time.monotonic()
            while not await request.is_disconnected():
                if feed.version != seen:
                    seen = feed.version
                    quiet_since = time.monotonic()
                    yield f"data: {json.dumps({'address': address, **feed.latest})}\n\n"
                elif time.monotonic() - quiet_since > 15:
                    quiet_since = time.monotonic()
                    yield ": keep-alive\n\n"
                await asyncio.sleep(0.05)

        headers = {"Cache-Control": "no-store", "X-Accel-Buffering": "no"}
        return StreamingResponse(stream(), media_type="text/event-stream", headers=headers)

    routes = [Route(path, static) for path in _STATIC]
    routes += [Route("/snapshot", snapshot), Route("/events", events)]
    return Starlette(routes=routes)


class Dashboard:
    """A dashboard served in a background thread (what ``llmos dashboard`` runs).

    Args:
        read: returns the snapshot to show (e.g. ``NodeWatcher.snapshot``).
        address: the node's address, shown on the page.
        bind: the host to listen on (default 127.0.0.1).
        port: the port (0: a free one; see ``url``).
        token: required unless ``bind`` is a loopback address.
        interval: seconds between two snapshots.

    Raises:
        LlmosError: a non-loopback ``bind`` without a token. OSError: the port cannot be bound.
    """

    def __init__(
        self,
        read: Callable[[], dict[str, Any]],
        address: str,
        bind: str = "127.0.0.1",
        port: int = 0,
        token: str | None = None,
        interval: float = 0.5,
    ) -> None:
        import uvicorn

        check_bind(bind, token)
        family = socket.AF_INET6 if ":" in bind else socket.AF_INET
        self.socket = socket.socket(family, socket.SOCK_STREAM)
        try:
            self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            self.socket.bind((bind, port))
            self.socket.listen(64)
        except OSError:
            self.socket.close()
            raise
        host, self.port = self.socket.getsockname()[:2]
        shown = f"[{host}]" if ":" in host else host
        self.url = f"http://{shown}:{self.port}/" + (f"?token={token}" if token else "")
        self.feed = SnapshotFeed(read, interval).start()
        config = uvicorn.Config(
            build_app(self.feed, address, token), log_level="warning", lifespan="off"
        )
        self.server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self.server.run, kwargs={"sockets": [self.socket]}, name="llmos:dashboard"
        )
        self._thread.start()

    def wait(self, timeout: float | None = None) -> bool:
        """Wait until the server stops (or ``timeout``); True if it did."""
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def close(self) -> None:
        """Stop serving, close the socket and stop reading snapshots."""
        self.server.should_exit = True
        self._thread.join(10.0)
        self.socket.close()
        self.feed.close()


def run_dashboard(
    address: str,
    bind: str = "127.0.0.1",
    port: int = 8765,
    token: str | None = None,
    interval: float = 0.5,
    timeout: float = 5.0,
    keys: str | None = None,
    server_key: str | None = None,
) -> int:
    """Run ``llmos dashboard``: serve the page until Ctrl+C; prints its URL first.

    Raises:
        NodeUnreachable, ActorDeadError: the node cannot be read at start.
        LlmosError: a non-loopback bind without a token. OSError: the port is taken.
    """
    check_bind(bind, token)
    logging.getLogger("llmos").addHandler(logging.NullHandler())
    logging.getLogger("llmos").propagate = False
    with NodeWatcher(address, timeout=timeout, keys=keys, server_key=server_key) as watcher:
        watcher.snapshot()  # fail now, with one line, if the node cannot be read
        dashboard = Dashboard(watcher.snapshot, address, bind, port, token, interval)
        try:
            print(f"llmos dashboard: {dashboard.url} (Ctrl+C ends)", flush=True)
            while not dashboard.wait(1.0):
                pass
            raise LlmosError("the web server stopped; see the lines above")
        finally:
            dashboard.close()
