"""The monitor's anomaly plot in a real headless Chromium: results of a real replay (ONNX Runtime anomaly model) sent
by a real publisher over ZeroMQ on 127.0.0.1; the page plots every score, draws the threshold line, marks each alerted
tick, counts the alerts and flips its status when a new result crosses the threshold."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("aiohttp")
from _anomaly_bundle import make_anomaly_bundle  # noqa: E402
from test_monitor_page import CHROMIUM, CHROMIUM_ARGS, MonitorThread  # noqa: E402
from test_pipeline import _recorded, tiny_spec  # noqa: E402

from edgefuse.runtime.pipeline import BoundModel, Pipeline  # noqa: E402
from edgefuse.runtime.publisher import Publisher  # noqa: E402
from edgefuse.spec import PublishSpec  # noqa: E402

READ_JS = """() => ({
  points: document.querySelector('#anomaly polyline.score').getAttribute('points').trim().split(/\\s+/).length,
  threshold: parseFloat(document.querySelector('#anomaly line.threshold').dataset.threshold),
  alerts: document.querySelectorAll('#anomaly circle.alert').length,
  meta: document.querySelector('#anomaly-meta').textContent,
  status: document.querySelector('#anomaly-status').textContent,
  mods: Object.fromEntries([...document.querySelectorAll('#anomaly .mods span')].map(s =>
    [s.dataset.modality, s.textContent])),
  hidden: document.querySelector('#anomaly-card').classList.contains('hidden'),
})"""


def replay_payloads(bundle: Path) -> tuple[list[dict], float]:
    """The results of a 3 s replay, with the alert threshold moved to the median score (so some ticks alert)."""
    spec = tiny_spec()
    model = BoundModel.load(bundle, backend="onnxruntime")
    out: list[dict] = []
    Pipeline(spec, model, {}, None, on_result=lambda g, p: out.append(p)).replay(_recorded(spec, 3.0))
    threshold = float(np.median([p["anomaly"]["score"] for p in out]))
    model.anomaly.info.threshold = threshold
    out.clear()
    Pipeline(spec, model, {}, None, on_result=lambda g, p: out.append(p)).replay(_recorded(spec, 3.0))
    model.close()
    return out, threshold


def wait_joined(pub: Publisher, mon: MonitorThread) -> None:
    """PUB/SUB joins asynchronously: send stats until the monitor has one, so no result is lost."""
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        pub.stats({"t_ns": time.monotonic_ns(), "sources": {}, "drops": {}, "latency_ms": {}, "ticks": 0,
                   "published": 0})  # fmt: skip
        time.sleep(0.1)
        if mon.state()["counts"].get("stats", 0):
            return
    raise AssertionError("the monitor never received the publisher's messages")


@pytest.mark.slow
@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"no Chromium at {CHROMIUM} (scripts/install-system-deps.sh)")
def test_anomaly_plot_and_alerts_in_chromium(tmp_path: Path):
    sync_api = pytest.importorskip("playwright.sync_api")
    bundle, _, _ = make_anomaly_bundle(tmp_path)
    payloads, threshold = replay_payloads(bundle)
    alerted = [p["anomaly"]["alert"] for p in payloads]
    assert 0 < sum(alerted) < len(payloads)
    last_normal = max(i for i, a in enumerate(alerted) if not a)
    payloads = payloads[: last_normal + 1]  # end on a normal tick; an alerting one comes later, live
    pub = Publisher(PublishSpec(endpoint="tcp://127.0.0.1:*"))
    try:
        with MonitorThread(pub.endpoint) as mon:
            wait_joined(pub, mon)
            for p in payloads:
                assert pub.result("", p)
            deadline = time.monotonic() + 10
            while mon.state()["counts"].get("result", 0) < len(payloads) and time.monotonic() < deadline:
                time.sleep(0.05)
            st = mon.state()
            assert st["counts"]["result"] == len(payloads)
            assert [a["score"] for a in st["anomaly"]] == [p["anomaly"]["score"] for p in payloads]
            n_alerts = sum(p["anomaly"]["alert"] for p in payloads)
            assert st["anomaly_alerts"] == n_alerts

            with sync_api.sync_playwright() as pw:
                browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
                try:
                    page = browser.new_page(viewport={"width": 1400, "height": 1000})
                    errors: list[str] = []
                    page.on("pageerror", lambda e: errors.append(str(e)))
                    page.goto(f"http://127.0.0.1:{mon.port}/")
                    page.wait_for_function("() => !!document.querySelector('#anomaly polyline.score')", timeout=15_000)
                    shown = page.evaluate(READ_JS)
                    # one more tick, live over the WebSocket: the highest-scoring result again, which alerts
                    top = max(payloads, key=lambda p: p["anomaly"]["score"])
                    assert top["anomaly"]["alert"]
                    assert pub.result("", top)
                    page.wait_for_function(
                        "() => document.querySelector('#anomaly-status').textContent === 'ALERT'", timeout=10_000
                    )
                    after = page.evaluate(READ_JS)
                    page.screenshot(path=str(tmp_path / "anomaly.png"), full_page=True)
                finally:
                    browser.close()
    finally:
        pub.close()

    assert not errors, errors
    assert not shown["hidden"]
    assert shown["points"] == len(payloads)
    assert shown["threshold"] == pytest.approx(threshold, rel=1e-6)
    assert shown["alerts"] == n_alerts and f"{n_alerts} alerts" in shown["meta"]
    assert shown["status"] == "normal"
    last = payloads[-1]["anomaly"]
    assert f"score {last['score']:.2f}" in shown["meta"]
    assert set(shown["mods"]) == set(last["modalities"])
    assert shown["mods"]["env"] == f"env {last['modalities']['env']:.2f}"
    assert after["points"] == len(payloads) + 1 and after["alerts"] == n_alerts + 1
    assert f"{n_alerts + 1} alerts" in after["meta"]
