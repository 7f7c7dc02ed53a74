"""`edgefuse monitor`: a live web dashboard of a running runtime, from what it publishes on ZeroMQ.

One asyncio process: a SUB socket (zmq.asyncio) reads every topic the runtime publishes (docs/wire.md), folds each
message into a MonitorState, and fans the resulting update out to every open page over one WebSocket per page.
A message that does not decode is counted and shown, never raised. The page is static files from this package
(no CDN, no build step).

    edgefuse monitor --endpoint tcp://127.0.0.1:5555 --port 8080     # then open http://127.0.0.1:8080

Routes: /  (the page)   /ws  (live updates: a snapshot, then one JSON object per change)   /api/state  (JSON
snapshot for scripts)   /thumb/<source>.jpg  (the latest thumbnail)   /static/*
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import signal
from pathlib import Path
from typing import Any

import zmq
import zmq.asyncio

from edgefuse._optional import require
from edgefuse.errors import EdgefuseError
from edgefuse.keys import curve_client
from edgefuse.runtime.monitor.state import MonitorState
from edgefuse.wire import WireError, decode

web = require("aiohttp.web", "the monitor's web server")

STATIC = Path(__file__).parent / "static"
CLIENT_QUEUE = 256  # updates buffered per page; a page that falls this far behind gets a fresh snapshot instead
log = logging.getLogger("edgefuse.monitor")


class Monitor:
    """Subscribes to a runtime's endpoint and serves the dashboard; `start()` / `stop()` for tests and the CLI."""

    def __init__(
        self,
        endpoint: str,
        host: str = "127.0.0.1",
        port: int = 8080,
        curve_server_key: str | None = None,
        curve_key: str | None = None,
    ):
        self.endpoint, self.host, self.port = endpoint, host, port
        self.curve = (curve_server_key, curve_key)  # CURVE client of a runtime that publishes with CURVE
        self.state = MonitorState(endpoint)
        self._clients: set[asyncio.Queue] = set()
        self._tasks: list[asyncio.Task] = []
        self._runner: Any = None
        self._ctx = zmq.asyncio.Context()

    # web ------------------------------------------------------------------------------------------------------------
    def app(self) -> Any:
        app = web.Application()
        app.router.add_get("/", self._index)
        app.router.add_get("/ws", self._ws)
        app.router.add_get("/api/state", self._api_state)
        app.router.add_get("/thumb/{source:.+}.jpg", self._thumb)
        app.router.add_static("/static/", STATIC)
        return app

    async def _index(self, request: Any) -> Any:
        return web.FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-cache"})

    async def _api_state(self, request: Any) -> Any:
        return web.json_response(self.state.snapshot())

    async def _thumb(self, request: Any) -> Any:
        jpeg = self.state.thumb_jpeg.get(request.match_info["source"])
        if jpeg is None:
            raise web.HTTPNotFound(text="no thumbnail from this source yet")
        return web.Response(body=jpeg, content_type="image/jpeg", headers={"Cache-Control": "no-store"})

    async def _ws(self, request: Any) -> Any:
        ws = web.WebSocketResponse(heartbeat=20)
        await ws.prepare(request)
        queue: asyncio.Queue = asyncio.Queue(CLIENT_QUEUE)
        self._clients.add(queue)
        reader: asyncio.Future = asyncio.get_running_loop().create_future()
        try:
            await ws.send_str(json.dumps(self.state.snapshot()))
            reader = asyncio.ensure_future(ws.receive())  # notices the page closing while we wait for updates
            while not ws.closed:
                getter = asyncio.ensure_future(queue.get())
                done, _ = await asyncio.wait({getter, reader}, return_when=asyncio.FIRST_COMPLETED)
                if reader in done:
                    if reader.result().type not in (web.WSMsgType.TEXT, web.WSMsgType.BINARY):
                        getter.cancel()
                        break
                    reader = asyncio.ensure_future(ws.receive())  # pages send nothing we use: ignore it
                if getter in done:
                    await ws.send_str(getter.result())
                else:
                    getter.cancel()
        except (ConnectionResetError, asyncio.CancelledError):
            pass
        finally:
            reader.cancel()
            self._clients.discard(queue)
            if not ws.closed:
                await ws.close()
        return ws

    def _broadcast(self, update: dict[str, Any]) -> None:
        text, snapshot = json.dumps(update), None
        for queue in list(self._clients):
            if queue.full():  # a slow page: drop its backlog and resynchronize it with one snapshot
                while not queue.empty():
                    queue.get_nowait()
                snapshot = snapshot or json.dumps(self.state.snapshot())
                queue.put_nowait(snapshot)
            else:
                queue.put_nowait(text)

    # zmq ------------------------------------------------------------------------------------------------------------
    def _connect(self) -> Any:
        sock = self._ctx.socket(zmq.SUB)
        sock.setsockopt(zmq.RCVHWM, 1000)
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.SUBSCRIBE, b"")  # every topic: results and all monitoring topics
        try:
            curve_client(sock, *self.curve, "monitor")
        except EdgefuseError:
            sock.close()
            raise
        try:
            sock.connect(self.endpoint)
        except zmq.ZMQError as err:
            sock.close()
            raise EdgefuseError(f"--endpoint {self.endpoint!r}: cannot connect ({err})") from None
        return sock

    async def _subscribe(self, sock: Any) -> None:
        try:
            while True:
                frames = await sock.recv_multipart(copy=True)
                self._broadcast(self.handle(frames))
        finally:
            sock.close()

    def handle(self, frames: list[bytes]) -> dict[str, Any]:
        """Decode and fold one message; whatever is wrong with it is counted as malformed, never raised."""
        try:
            return self.state.apply(decode(frames))
        except WireError as err:
            return self.state.count_malformed(str(err))
        except (KeyError, TypeError, ValueError, IndexError, AttributeError) as err:
            # valid by schema but not foldable (e.g. series values that do not fit its channels)
            topic = bytes(frames[0])[:64].decode(errors="replace") if frames else ""
            return self.state.count_malformed(f"{topic}: {type(err).__name__}: {err}")

    async def _heartbeat(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            self._broadcast(self.state.heartbeat())

    # lifecycle ------------------------------------------------------------------------------------------------------
    async def start(self) -> int:
        """Subscribe and serve; returns the bound HTTP port (port 0 picks a free one)."""
        sock = self._connect()
        self._runner = web.AppRunner(self.app(), access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        try:
            await site.start()
        except OSError as err:
            sock.close()
            await self._runner.cleanup()
            raise EdgefuseError(
                f"--host {self.host} --port {self.port}: cannot listen ({err.strerror or err})"
            ) from None
        self._tasks = [asyncio.ensure_future(self._subscribe(sock)), asyncio.ensure_future(self._heartbeat())]
        self.port = self._runner.addresses[0][1]
        return self.port

    async def stop(self) -> None:
        for t in self._tasks:
            t.cancel()
        for t in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await t
        if self._runner is not None:
            await self._runner.cleanup()
        self._ctx.term()


async def serve(endpoint: str, host: str, port: int, curve: tuple[str | None, str | None] = (None, None)) -> None:
    """Run the monitor until SIGINT/SIGTERM; `curve`: (runtime's public certificate, this client's secret one)."""
    monitor = Monitor(endpoint, host, port, *curve)
    bound = await monitor.start()
    print(f"edgefuse monitor: http://{host}:{bound}/  (subscribed to {endpoint})", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):  # no signal handlers on some platforms
            loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        await monitor.stop()


def cli_monitor(args: argparse.Namespace) -> int:
    """`edgefuse monitor --endpoint tcp://127.0.0.1:5555 --host 127.0.0.1 --port 8080 [--curve-server-key K
    --curve-key K]`."""
    curve = (getattr(args, "curve_server_key", None), getattr(args, "curve_key", None))
    asyncio.run(serve(args.endpoint, args.host, args.port, curve))
    return 0
