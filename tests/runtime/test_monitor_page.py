"""edgefuse monitor: fed by a real publisher over ZeroMQ on 127.0.0.1, served over real HTTP, and (last test) shown
in a real headless Chromium driven by a real pipeline run on synthetic streams."""

from __future__ import annotations

import asyncio
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import cv2
import numpy as np
import pytest

pytest.importorskip("aiohttp")
from edgefuse import wire  # noqa: E402
from edgefuse.cli import main as cli_main  # noqa: E402
from edgefuse.runtime.monitor.server import Monitor  # noqa: E402
from edgefuse.runtime.monitor.state import STALE_S, MonitorState  # noqa: E402
from edgefuse.runtime.publisher import Publisher  # noqa: E402
from edgefuse.spec import PublishSpec, load_spec  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
CONFIGS, DOCS = ROOT / "configs", ROOT / "docs"
UPDATE_SCREENSHOT = os.environ.get("EDGEFUSE_UPDATE_SCREENSHOT") == "1"  # also copy the screenshot to docs/

LABELS = ["person_entering", "door_knock", "doorbell", "glass_break", "fall", "cooking", "alarm", "idle"]
ENV = ["motion", "door", "temperature", "humidity", "light", "smoke"]


class MonitorThread:
    """The monitor's asyncio server on its own thread and loop, as `edgefuse monitor` runs it, on a free port."""

    def __init__(self, endpoint: str, fleet: bool = False):
        self.endpoint, self.fleet = endpoint, fleet
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self._ready = threading.Event()
        self.port = 0

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.monitor = Monitor(self.endpoint, "127.0.0.1", 0, fleet=self.fleet)
        self.port = self.loop.run_until_complete(self.monitor.start())
        self._ready.set()
        self.loop.run_forever()

    def __enter__(self) -> MonitorThread:
        self.thread.start()
        assert self._ready.wait(10), "monitor did not start"
        return self

    def __exit__(self, *exc: object) -> None:
        asyncio.run_coroutine_threadsafe(self.monitor.stop(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)

    def get(self, path: str) -> bytes:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=5) as resp:
            return resp.read()

    def state(self) -> dict:
        return json.loads(self.get("/api/state"))

    def state_of_fleet(self) -> dict:
        return json.loads(self.get("/api/fleet"))


def _publish_round(pub: Publisher, i: int) -> np.ndarray:
    """One round of what a runtime publishes: a result, stats, a thumbnail, an audio level, sensor rows."""
    now = time.monotonic_ns()
    probs = np.full(len(LABELS), 0.02)
    probs[3] = 1 - probs.sum() + 0.02  # glass_break wins
    payload = wire.result_payload(
        now,
        {"camera": now - 20_000_000, "mic": now - 1_000_000, "env": None},
        {"camera": True, "mic": True, "env": False},
        {"event": dict(zip(LABELS, probs.tolist(), strict=True))},
        {"sync": 0.4, "infer": 3.0 + 0.01 * i, "e2e": 6.0},
    )
    assert pub.result("", payload)
    sources = {"camera": {"samples": 10 * i, "drops": 1}, "mic": {"samples": 16000 * i}, "env": {"samples": 0}}
    pub.stats({"t_ns": now, "sources": sources, "drops": {"queue_full": 0, "late": 2}, "latency_ms": {}, "ticks": i,
               "published": i})  # fmt: skip
    frame = np.zeros((48, 64, 3), np.uint8)
    frame[:, :32] = (0, 0, 255)  # left half red (BGR)
    pub.thumb("camera", frame, now)
    t = np.arange(1600) / 16000
    pub.level("mic", (0.5 * np.sin(2 * np.pi * 440 * t))[:, None].astype(np.float32), now)
    rows = np.tile(np.arange(len(ENV), dtype=np.float32), (5, 1)) + i  # (5, 6)
    pub.series("env", rows, now, 10.0, ENV)
    # and what a broken or foreign publisher might send on the same endpoint
    pub.sock.send_multipart([b"result", b"\xc1", b"\x80"])  # not msgpack
    bad_version = wire.encode("stats", "stats", 0, now, "", {})
    bad_version[1] = wire._pack({"v": 99, "type": "stats", "seq": 0, "t_pub_ns": now, "group": ""})
    pub.sock.send_multipart(bad_version)
    return rows


def test_monitor_folds_a_real_publisher_and_counts_malformed_messages():
    pub = Publisher(PublishSpec(endpoint="tcp://127.0.0.1:*"))
    try:
        with MonitorThread(pub.endpoint) as mon:
            deadline, i, st = time.monotonic() + 15, 0, {}
            while time.monotonic() < deadline:  # PUB/SUB joins asynchronously: publish until the monitor has seen some
                i += 1
                rows = _publish_round(pub, i)
                time.sleep(0.1)
                st = mon.state()
                if st["counts"].get("result", 0) >= 3 and st["counts"].get("stats", 0) >= 3:
                    break
            assert st["counts"]["result"] >= 3, st["counts"]
            # two bad messages per round; every one counted, the server still answering
            assert st["malformed"] >= 2 * st["counts"]["result"] - 2
            assert "v99" in st["last_error"] or "version" in st["last_error"] or "msgpack" in st["last_error"]

            last = st["results"][-1]
            assert last["top"] == {"event": "glass_break"}
            assert last["scores"]["event"]["glass_break"] == pytest.approx(0.86)
            streams = {s["id"]: s for s in st["streams"]}
            assert streams["camera"]["health"] == "ok" and streams["env"]["health"] == "missing"
            assert streams["camera"]["sync_offset_ms"] == pytest.approx(-20.0)
            assert streams["camera"]["rate_hz"] > 0  # measured from the sample counts between stats messages
            assert st["latency"]["infer"]["p50"] == pytest.approx(3.0, abs=0.2)
            assert st["latency"]["e2e"]["p99"] == pytest.approx(6.0)
            # a 0.5-amplitude sine has RMS 0.5/sqrt(2): -9.03 dBFS
            assert st["levels"]["mic"]["rms_db"][0] == pytest.approx(20 * math.log10(0.5 / math.sqrt(2)), abs=0.05)
            assert st["series"]["env"]["channels"] == ENV
            assert st["series"]["env"]["values"][2][-1] == pytest.approx(float(rows[-1, 2]))

            img = cv2.imdecode(np.frombuffer(mon.get("/thumb/camera.jpg"), np.uint8), cv2.IMREAD_COLOR)
            assert img.shape == (48, 64, 3)
            assert img[24, 10, 2] > 200 and img[24, 50, 2] < 50  # red on the left only: the frame we sent
            assert b"<title>edgefuse monitor</title>" in mon.get("/")
            assert b"WebSocket" in mon.get("/static/app.js")
    finally:
        pub.close()


def _msg(mtype: str, topic: str, payload: dict) -> wire.Message:
    return wire.decode(wire.encode(mtype, topic, 0, 0, "", payload))


def test_stream_goes_stale_when_its_sample_count_stops_growing():
    st = MonitorState()
    stats = lambda n, t_s: {"t_ns": int(t_s * 1e9), "sources": {"env": {"samples": n}}, "drops": {},
                            "latency_ms": {}, "ticks": 0, "published": 0}  # fmt: skip
    st.apply(_msg("stats", "stats", stats(10, 1.0)), now=1.0)
    st.apply(_msg("stats", "stats", stats(20, 2.0)), now=2.0)
    row = st.stream_rows(now=2.5)[0]
    assert row["health"] == "ok" and row["rate_hz"] == pytest.approx(10.0)
    st.apply(_msg("stats", "stats", stats(20, 3.0)), now=3.0)  # no growth since t=2
    assert st.stream_rows(now=2.0 + STALE_S + 0.1)[0]["health"] == "stale"
    assert st.heartbeat(now=2.0 + 10)["live"] is False  # nothing for 10 s: the runtime is silent


def test_series_values_that_do_not_fit_their_channels_are_malformed_not_fatal():
    mon = Monitor("tcp://127.0.0.1:1")  # never started: handle() is the per-message path only
    bad = wire.encode("series", "series/env", 0, 0, "", {"t_capture_ns": 0, "rate_hz": 10.0, "channels": ["a", "b"],
                                                          "values": [[1.0, 2.0, 3.0]]})  # fmt: skip
    update = mon.handle(bad)
    assert update["kind"] == "malformed" and "series/env" in update["last_error"]
    assert mon.handle([b"x"])["malformed"] == 2
    good = wire.encode("level", "level/mic", 0, 0, "", {"t_capture_ns": 0, "rms_db": [-20.0]})
    assert mon.handle(good)["level"]["rms_db"] == [-20.0]
    mon._ctx.term()


# ---------------------------------------------------------------------------------------------------------------------
# The page in a real headless Chromium

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run", "--disable-quic"]  # fmt: skip


READY_JS = """() => {
          const rates = [...document.querySelectorAll('#streams td.rate')].map(td => parseFloat(td.textContent));
          const img = document.querySelector('img.thumb');
          return rates.some(r => r > 0) && !!document.querySelector('#result .head .top')
            && !!document.querySelector('#latency td.p50') && !!img && img.complete && img.naturalWidth > 0
            && document.querySelectorAll('.spark polyline').length > 0 && !!document.querySelector('.meter .db');
        }"""


READ_JS = """() => ({
          streams: [...document.querySelectorAll('#streams tbody tr')].map(tr => ({
            id: tr.dataset.source, rate: parseFloat(tr.querySelector('.rate').textContent),
            health: tr.querySelector('.health').textContent})),
          tops: Object.fromEntries([...document.querySelectorAll('#result .head')].map(h =>
            [h.dataset.head, h.querySelector('.top').textContent])),
          bars: [...document.querySelectorAll('#result .bar-row')].map(r => r.dataset.label),
          p50: [...document.querySelectorAll('#latency tbody tr')].map(tr =>
            [tr.dataset.stage, parseFloat(tr.querySelector('.p50').textContent)]),
          thumb: (img => ({w: img.naturalWidth, h: img.naturalHeight}))(document.querySelector('img.thumb')),
          level: parseFloat(document.querySelector('.meter .db').textContent),
          live: document.querySelector('#live').textContent,
          malformed: parseInt(document.querySelector('#malformed').textContent),
        })"""


@pytest.fixture(scope="session")
def home_bundle(tmp_path_factory) -> Path:
    """A real smart_home bundle, built by the documented commands: synth -> train (1 epoch) -> export."""
    root = tmp_path_factory.mktemp("home")
    config = str(CONFIGS / "smart_home.yaml")
    for argv in (
        ["synth", "--config", config, "--out", str(root / "data"), "--samples", "64"],
        ["train", "--config", config, "--data", str(root / "data"), "--out", str(root / "run"), "--epochs", "1"],
        ["export", "--run", str(root / "run"), "--out", str(root / "bundle")],
    ):
        assert cli_main(argv) == 0, f"edgefuse {' '.join(argv)} failed"  # in process: torch is imported once
    return root / "bundle"


@pytest.fixture
def live_runtime(home_bundle: Path, tmp_path: Path, free_endpoint):
    """`edgefuse run` on the smart_home synthetic streams, publishing on a free port; yields its endpoint."""
    endpoint = free_endpoint()
    argv = [sys.executable, "-m", "edgefuse.cli", "run", "--config", str(CONFIGS / "smart_home.yaml"),
            "--bundle", str(home_bundle), "--endpoint", endpoint, "--duration", "60",
            "--summary", str(tmp_path / "run.json")]  # fmt: skip
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        yield endpoint
    finally:
        proc.send_signal(signal.SIGTERM)  # a clean stop: threads joined, summary written
        out, err = proc.communicate(timeout=15)
        assert proc.returncode == 0, f"edgefuse run failed:\n{out}\n{err}"


@pytest.mark.slow
@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"no Chromium at {CHROMIUM} (scripts/install-system-deps.sh)")
def test_dashboard_shows_a_live_pipeline_in_chromium(live_runtime: str, tmp_path: Path):
    sync_api = pytest.importorskip("playwright.sync_api")
    spec = load_spec(CONFIGS / "smart_home.yaml")
    with MonitorThread(live_runtime) as mon, sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            errors: list[str] = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(f"http://127.0.0.1:{mon.port}/")
            page.wait_for_function(READY_JS, timeout=30_000)
            # a few more ticks and stats so the sparklines and history fill in (more for the README's picture)
            time.sleep(10 if UPDATE_SCREENSHOT else 2.5)
            shown = page.evaluate(READ_JS)
            shot = tmp_path / "monitor.png"
            page.screenshot(path=str(shot), full_page=True)
        finally:
            browser.close()
        state = mon.state()
    if UPDATE_SCREENSHOT:
        shutil.copyfile(shot, DOCS / "monitor.png")

    assert not errors, errors
    assert shot.stat().st_size > 20_000
    assert {s["id"] for s in shown["streams"]} == set(spec.modality_names)
    rates = {s["id"]: s["rate"] for s in shown["streams"]}
    assert 5 < rates["camera"] < 15 and 5 < rates["env"] < 15, rates  # both at 10 Hz in the spec
    assert all(s["health"] in ("ok", "stale", "missing") for s in shown["streams"])
    assert shown["tops"]["event"] in spec.labels["event"]
    assert sorted(shown["bars"]) == sorted(spec.labels["event"])
    p50 = dict(shown["p50"])
    assert 0 < p50["infer"] < 1000 and p50["e2e"] >= p50["infer"]
    assert shown["thumb"]["w"] > 0 and shown["thumb"]["h"] > 0
    assert -120 < shown["level"] <= 0  # dBFS of the synthetic microphone
    assert shown["live"] == "live" and shown["malformed"] == 0 == state["malformed"]
    assert state["counts"]["result"] >= 2 and set(state["series"]["env"]["channels"]) == set(
        spec.modalities["env"].channels
    )


# ---------------------------------------------------------------------------------------------------------------------
# A fleet: 8 runtimes (fast replays) behind one relay, the fleet page and one device's page in Chromium

FLEET = [f"cam-{i:02d}" for i in range(8)]

FLEET_READ_JS = """() => Object.fromEntries([...document.querySelectorAll('#devices tbody tr[data-device]')].map(tr =>
          [tr.dataset.device, {status: tr.querySelector('.status').textContent,
            results: parseInt(tr.querySelector('.results').textContent), top: tr.querySelector('.top').textContent,
            p50: tr.querySelector('.p50').textContent, p99: tr.querySelector('.p99').textContent,
            missed: parseInt(tr.querySelector('.missed').textContent), alerts: tr.querySelector('.alerts').textContent,
            href: tr.querySelector('a').getAttribute('href')}]))"""


@pytest.mark.slow
@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"no Chromium at {CHROMIUM} (scripts/install-system-deps.sh)")
def test_fleet_page_shows_8_replays_behind_a_relay_and_drills_into_one(home_bundle: Path, tmp_path: Path):
    import yaml

    from edgefuse.runtime.record import record
    from edgefuse.runtime.relay import Relay
    from edgefuse.spec import spec_to_dict

    sync_api = pytest.importorskip("playwright.sync_api")
    spec = load_spec(CONFIGS / "smart_home.yaml")
    record(spec, tmp_path / "session", duration_s=4.0)  # real synthetic streams, recorded once, replayed 8 times
    relay = Relay("tcp://127.0.0.1:*", "tcp://127.0.0.1:*").start()
    try:
        with MonitorThread(relay.out_endpoint, fleet=True) as mon:
            deadline = time.monotonic() + 10
            while relay.snapshot()["subscribed_topics"] < 1:  # the monitor's subscription has reached the relay
                assert time.monotonic() < deadline
                time.sleep(0.05)
            procs = []
            for i, device in enumerate(FLEET):  # each device ticks at its own rate: its own number of results
                d = spec_to_dict(spec)
                d["runtime"]["tick_hz"] = 1 + i % 4
                (tmp_path / f"{device}.yaml").write_text(yaml.safe_dump(d, sort_keys=False))
                argv = [sys.executable, "-m", "edgefuse.cli", "replay", "--session", str(tmp_path / "session"),
                        "--bundle", str(home_bundle), "--config", str(tmp_path / f"{device}.yaml"), "--fast",
                        "--endpoint", "tcp://127.0.0.1:*", "--connect", relay.in_endpoint, "--device-id", device,
                        "--summary", str(tmp_path / f"{device}.json"), "--results", str(tmp_path / f"{device}.jsonl")]  # fmt: skip
                procs.append(subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
            for p in procs:
                out, err = p.communicate(timeout=120)
                assert p.returncode == 0, f"edgefuse replay failed:\n{out}\n{err}"
            expect = {}
            for device in FLEET:
                summary = json.loads((tmp_path / f"{device}.json").read_text())
                last = json.loads((tmp_path / f"{device}.jsonl").read_text().splitlines()[-1])
                expect[device] = {"results": summary["published"], "top": " · ".join(last["top"].values())}
            assert len({e["results"] for e in expect.values()}) == 4  # four tick rates: four different counts

            with sync_api.sync_playwright() as p:
                browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
                try:
                    page = browser.new_page(viewport={"width": 1400, "height": 460})
                    errors: list[str] = []
                    page.on("pageerror", lambda e: errors.append(str(e)))
                    page.goto(f"http://127.0.0.1:{mon.port}/")
                    # the replays are over: after SILENT_S every device turns silent and raises its alert
                    page.wait_for_function(
                        f"() => document.querySelectorAll('#devices tr[data-device]').length === {len(FLEET)}"
                        " && [...document.querySelectorAll('#devices .status')].every(td => td.textContent === 'silent')",
                        timeout=20_000,
                    )
                    shown = page.evaluate(FLEET_READ_JS)
                    page.screenshot(path=str(tmp_path / "fleet.png"))
                    if UPDATE_SCREENSHOT:
                        shutil.copyfile(tmp_path / "fleet.png", DOCS / "fleet.png")
                    api = {d["device"]: d for d in mon.state_of_fleet()["devices"]}
                    page.click("#devices tr[data-device='cam-03'] a")  # drill into one device's own page
                    page.wait_for_url(f"http://127.0.0.1:{mon.port}/device/cam-03")
                    page.wait_for_function("() => !!document.querySelector('#result .head .top')", timeout=10_000)
                    one = page.evaluate(
                        "() => ({device: document.querySelector('#device').textContent,"
                        " top: [...document.querySelectorAll('#result .head .top')].map(e => e.textContent),"
                        " history: document.querySelectorAll('#history tbody tr').length})"
                    )
                    page.screenshot(path=str(tmp_path / "fleet-device.png"))
                finally:
                    browser.close()
    finally:
        relay.close()

    assert not errors, errors
    assert sorted(shown) == FLEET
    for device in FLEET:
        row = shown[device]
        assert row["results"] == expect[device]["results"], (device, row, expect[device])  # none lost on the way
        assert row["top"] == expect[device]["top"] and row["missed"] == 0
        assert row["status"] == "silent" and "silent" in row["alerts"]
        assert row["href"] == f"/device/{device}"
        p50 = api[device]["e2e_p50"]
        assert p50 is not None and p50 > 0 and row["p50"] == f"{p50:.1f}" and float(row["p99"]) >= float(row["p50"])
    assert one["device"] == "cam-03" and one["top"] == [expect["cam-03"]["top"]]
    assert one["history"] == min(8, expect["cam-03"]["results"])
