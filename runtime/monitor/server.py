"""`edgefuse monitor`: a live web dashboard of a running runtime, or of a fleet, from what they publish on ZeroMQ.

One asyncio process: a SUB socket (zmq.asyncio) reads every topic the runtime publishes (docs/wire.md), folds each
message into a MonitorState, and fans the resulting update out to every open page over one WebSocket per page.
A message that does not decode is counted and shown, never raised. The page is static files from this package
(no CDN, no build step).

    edgefuse monitor --endpoint tcp://127.0.0.1:5555 --port 8080     # then open http://127.0.0.1:8080
    edgefuse monitor --relay tcp://hub:5557 --port 8080              # a fleet: every device behind a relay
    edgefuse monitor --endpoint tcp://a:5555 --endpoint tcp://b:5555 # a fleet of runtimes read directly

Routes: /  (the page: one runtime's, or the fleet's)   /device/<id>  (one device's page, in a fleet)
/ws[?device=<id>|?fleet=1]  (live updates: a snapshot, then one JSON object per change)   /api/state[?device=<id>]
and /api/fleet  (JSON snapshots for scripts)   /thumb/<source>.jpg[?device=<id>]  (the latest thumbnail)   /static/*
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
from edgefuse.runtime.monitor.fleet import FleetState
from edgefuse.runtime.monitor.state import MonitorState
from edgefuse.wire import WireError, decode

web = require("aiohttp.web", "the monitor's web server")

STATIC = Path(__file__).parent / "static"
HEARTBEAT_S = 1.0  # quiet-time updates: stream health, silent runtimes, the fleet page's rows
CLIENT_QUEUE = 256  # updates buffered per page; a page that falls this far behind gets a fresh snapshot instead
log = logging.getLogger("edgefuse.monitor")


class Monitor:
    """Subscribes to a runtime's endpoint (or a fleet's: a relay, several runtimes) and serves the dashboard;
    `start()` / `stop()` for tests and the CLI. With `fleet`, messages are kept per device (FleetState) and `/`
    is the fleet page; otherwise everything folds into one MonitorState, as for one runtime."""

    def __init__(
        self,
        endpoint: str | list[str],
        host: str = "127.0.0.1",
        port: int = 8080,
        fleet: bool = False,
        curve_server_key: str | None = None,
        curve_key: str | None = None,
    ):
        self.endpoints = [endpoint] if isinstance(endpoint, str) else list(endpoint)
        self.endpoint, self.host, self.port = " ".join(self.endpoints), host, port
        self.is_fleet = fleet or len(self.endpoints) > 1
        self.curve = (curve_server_key, curve_key)  # CURVE client of runtimes (or a relay) that publish with CURVE
        self.state = MonitorState(self.endpoint)
        self.fleet = FleetState(self.endpoints)
        self._clients: dict[asyncio.Queue, str | None] = {}  # page -> its device ("" for the one runtime), None: fleet
        self._tasks: list[asyncio.Task] = []
        self._runner: Any = None
        self._ctx = zmq.asyncio.Context()

    # web ------------------------------------------------------------------------------------------------------------
    def app(self) -> Any:
        app = web.Application()
        app.router.add_get("/", self._index)
        app.router.add_get("/device/{device}", self._device_page)
        app.router.add_get("/ws", self._ws)
        app.router.add_get("/api/state", self._api_state)
        app.router.add_get("/api/fleet", self._api_fleet)
        app.router.add_get("/thumb/{source:.+}.jpg", self._thumb)
        app.router.add_static("/static/", STATIC)
        return app

    async def _index(self, request: Any) -> Any:
        page = "fleet.html" if self.is_fleet else "index.html"
        return web.FileResponse(STATIC / page, headers={"Cache-Control": "no-cache"})

    async def _device_page(self, request: Any) -> Any:
        return web.FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-cache"})

    def _state_of(self, device: str | None) -> MonitorState:
        """The state a page or script asks for: one device of the fleet, or the one runtime."""
        if not self.is_fleet:
            return self.state
        if device is None or device not in self.fleet.devices:
            raise web.HTTPNotFound(text=f"no device {device!r} has published yet")
        return self.fleet.devices[device]

    async def _api_state(self, request: Any) -> Any:
        return web.json_response(self._state_of(request.query.get("device")).snapshot())

    async def _api_fleet(self, request: Any) -> Any:
        return web.json_response(self.fleet.snapshot())

    async def _thumb(self, request: Any) -> Any:
        state = self._state_of(request.query.get("device"))
        jpeg = state.thumb_jpeg.get(request.match_info["source"])
        if jpeg is None:
            raise web.HTTPNotFound(text="no thumbnail from this source yet")
        return web.Response(body=jpeg, content_type="image/jpeg", headers={"Cache-Control": "no-store"})

    async def _ws(self, request: Any) -> Any:
        key = None if request.query.get("fleet") else request.query.get("device", "")
        first = self.fleet.snapshot() if key is None else self._state_of(key if self.is_fleet else None).snapshot()
        ws = web.WebSocketResponse(heartbeat=20)
        await ws.prepare(request)
        queue: asyncio.Queue = asyncio.Queue(CLIENT_QUEUE)
        self._clients[queue] = key if self.is_fleet or key is None else ""
        reader: asyncio.Future = asyncio.get_running_loop().create_future()
        try:
            await ws.send_str(json.dumps(first))
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
            self._clients.pop(queue, None)
            if not ws.closed:
                await ws.close()
        return ws

    def _broadcast(self, update: dict[str, Any], key: str | None = "") -> None:
        """Send an update to the pages showing `key` (a device; "" the one runtime; None the fleet page)."""
        text, snapshot = json.dumps(update), None
        for queue, shows in list(self._clients.items()):
            if shows != key:
                continue
            if queue.full():  # a slow page: drop its backlog and resynchronize it with one snapshot
                while not queue.empty():
                    queue.get_nowait()
                if snapshot is None:
                    state = self.fleet if key is None else self.state if not self.is_fleet else self.fleet.device(key)
                    snapshot = json.dumps(state.snapshot())
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
        for endpoint in self.endpoints:
            try:
                sock.connect(endpoint)
            except zmq.ZMQError as err:
                sock.close()
                raise EdgefuseError(f"--endpoint {endpoint!r}: cannot connect ({err})") from None
        return sock

    async def _subscribe(self, sock: Any) -> None:
        try:
            while True:
                frames = await sock.recv_multipart(copy=True)
                if self.is_fleet:
                    self._broadcast(*self.handle_fleet(frames))
                else:
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

    def handle_fleet(self, frames: list[bytes]) -> tuple[dict[str, Any], str | None]:
        """handle() for a fleet: (the update, the device whose pages get it; None: the fleet page)."""
        try:
            device, update = self.fleet.apply(decode(frames))
            return update, device
        except WireError as err:
            return self.fleet.count_malformed(str(err)), None
        except (KeyError, TypeError, ValueError, IndexError, AttributeError) as err:
            topic = bytes(frames[0])[:64].decode(errors="replace") if frames else ""
            return self.fleet.count_malformed(f"{topic}: {type(err).__name__}: {err}"), None

    async def _heartbeat(self) -> None:
        """Every HEARTBEAT_S: the fleet page's rows, and each device page's stream health, even when all is quiet."""
        while True:
            await asyncio.sleep(HEARTBEAT_S)
            if not self.is_fleet:
                self._broadcast(self.state.heartbeat())
                continue
            self._broadcast(self.fleet.snapshot(), None)
            for device in {k for k in self._clients.values() if k is not None and k in self.fleet.devices}:
                self._broadcast(self.fleet.devices[device].heartbeat(), device)

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


async def serve(
    endpoints: list[str], host: str, port: int, fleet: bool = False, curve: tuple[str | None, str | None] = (None, None)
) -> None:
    """Run the monitor until SIGINT/SIGTERM; `curve`: (runtime's public certificate, this client's secret one)."""
    monitor = Monitor(endpoints, host, port, fleet, *curve)
    bound = await monitor.start()
    what = "fleet behind " if monitor.is_fleet else ""
    print(f"edgefuse monitor: http://{host}:{bound}/  ({what}{' '.join(endpoints)})", flush=True)
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
    """`edgefuse monitor [--endpoint E ...] [--relay R] --host 127.0.0.1 --port 8080 [--curve-server-key K
    --curve-key K]`."""
    curve = (getattr(args, "curve_server_key", None), getattr(args, "curve_key", None))
    endpoints = list(args.endpoint or []) + list(args.relay or [])
    asyncio.run(serve(endpoints or ["tcp://127.0.0.1:5555"], args.host, args.port, bool(args.relay), curve))
    return 0
