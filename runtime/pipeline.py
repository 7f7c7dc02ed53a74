"""The live pipeline: sources -> bounded queues -> one synchronizer per sensor group -> batches -> model -> PUB.

Threads (nothing on a capture thread but `read` and a queue put):
  source-<id>   one per source: read(timeout) -> SampleQueue (drop-oldest, seq gaps counted)
  sync          drains every queue, pushes into the group's Synchronizer, polls, puts ticks on the tick queue
  output        batches ticks across groups (runtime.batch_max, or one tick of every group, or batch_deadline_ms),
                runs the backend, publishes results, and the monitoring topics at publish.monitor_hz

Each tick carries monotonic stamps per stage; a result's latency_ms holds, in milliseconds:
  wait     tick time -> the synchronizer emitted it (waiting for samples, at most the latency budget)
  sync     assembling the tensors not built earlier   queue   tick queue hand-off to the output thread
  batch    waiting for other groups' ticks (deadline) stack   stacking the batch into feeds
  infer    the backend call                          publish building and sending the result
  e2e      the newest sample needed reached the runtime (queue put, or its t_arrival_ns if later; or the budget ran
           out) -> published
  overhead e2e minus infer and batch wait: what the runtime itself costs per tick

`replay()` runs the same synchronizer, batching, model and publishing single-threaded on the samples' recorded
clock, so a session replayed twice gives identical results.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgefuse.errors import BundleError
from edgefuse.heads import clip_value, labels_on
from edgefuse.runtime.clock import Sample, monotonic_ns
from edgefuse.runtime.queues import BoundedQueue, Drops, SampleQueue
from edgefuse.runtime.stats import Accuracy, Recorders
from edgefuse.runtime.sync import Synchronizer, Tick, in_arrival_order, label_at
from edgefuse.spec import ScenarioSpec
from edgefuse.wire import result_payload

log = logging.getLogger(__name__)
READ_TIMEOUT_S = 0.05  # how long a source read blocks: bounds how fast a stop request is noticed
MONITOR_TAP = 64  # recent samples kept per source for the monitoring topics
MONITOR_IDLE_S = 0.5  # with no results for this long, monitoring runs on its own clock


# ---------------------------------------------------------------------------------------------------------------------
# The model side: a backend and what the bundle's manifest says about its tensors


@dataclass
class BoundModel:
    """A loaded backend plus the manifest facts the pipeline needs: input dtypes, mask order, heads and labels."""

    backend: Any
    spec: ScenarioSpec  # the spec the bundle was trained with
    input_dtypes: dict[str, np.dtype]
    mask_order: list[str]
    heads: list[tuple[str, str, list[str]]]  # (output tensor, head, labels) of the class and multilabel heads
    text_settings: dict[str, tuple[int, int]]
    # the manifest's OutputSpecs of the multilabel and regression heads (edgefuse/heads.py): thresholds, unit, range
    other_heads: list[Any] = field(default_factory=list)
    anomaly: Any = None  # runtime/anomaly.py's AnomalyScorer when the bundle has an anomaly model

    @classmethod
    def load(
        cls, bundle_dir: str | Path, backend: str = "auto", precision: str = "fp32", model: Any = None
    ) -> BoundModel:
        """Load the bundle on the backend runtime.model picks (`model`, a RuntimeModelSpec), or on
        `backend`/`precision` when no model section is given."""
        from edgefuse.deploy.backends import load_backend, load_model

        be = load_model(bundle_dir, model) if model is not None else load_backend(bundle_dir, backend, precision)
        from edgefuse.deploy.bundle import load_bundle
        from edgefuse.runtime.anomaly import AnomalyScorer

        bundle = load_bundle(bundle_dir, verify=False)  # load_backend verified the files already
        man = bundle.manifest
        device, threads = (model.device, model.threads) if model is not None else ("auto", None)
        text = {
            m: (p.tokenizer.buckets, p.tokenizer.ngrams) for m, p in man.preprocess.items() if p.tokenizer is not None
        }
        return cls(
            backend=be,
            spec=man.scenario(),
            input_dtypes={t.name: np.dtype(t.dtype) for t in be.inputs},
            mask_order=list(man.mask.modalities),
            heads=[(o.name, o.head, list(o.labels)) for o in man.outputs if o.kind != "regression"],
            text_settings=text,
            other_heads=[o for o in man.outputs if o.kind != "class"],
            anomaly=AnomalyScorer.load(bundle, device, threads),
        )

    def feeds(self, batch: list[Tick], names: list[str]) -> dict[str, np.ndarray]:
        """Stack ticks into the model's feeds: modality -> (B, ...), mask -> (B, M) in the manifest's order."""
        dt = self.input_dtypes
        cols = [names.index(m) for m in self.mask_order]
        if len(batch) == 1:  # the common live case: a batch-of-one view of the tick's own arrays, no copy
            t = batch[0]
            feeds = {m: t.inputs[m][None].astype(dt[m], copy=False) for m in names}
            feeds["mask"] = t.mask[cols][None].astype(dt["mask"], copy=False)
            return feeds
        feeds = {m: np.stack([t.inputs[m] for t in batch]).astype(dt[m], copy=False) for m in names}
        feeds["mask"] = np.stack([t.mask for t in batch])[:, cols].astype(dt["mask"], copy=False)
        return feeds

    def scores(self, outputs: dict[str, np.ndarray], i: int) -> dict[str, dict[str, float]]:
        """Row i of the outputs as {head: {label: probability}}."""
        return {head: dict(zip(labels, outputs[name][i].tolist(), strict=True)) for name, head, labels in self.heads}

    def head_results(self, outputs: dict[str, np.ndarray], i: int) -> dict[str, Any]:
        """Row i's result keys beyond `scores`: "multilabel" {head: [labels at or above their threshold]} and
        "values" {head: {value (clipped to the head's range), unit}}, each only when the bundle has such heads."""
        out: dict[str, Any] = {}
        for o in self.other_heads:
            if o.kind == "multilabel":
                out.setdefault("multilabel", {})[o.head] = labels_on(outputs[o.name][i], o.labels, o.thresholds)
            elif o.kind == "regression":
                value = clip_value(float(outputs[o.name][i, 0]), o.min, o.max)
                out.setdefault("values", {})[o.head] = {"value": value, "unit": o.unit or ""}
        return out

    def close(self) -> None:
        self.backend.close()
        if self.anomaly is not None:
            self.anomaly.close()


def check_compatible(spec: ScenarioSpec, trained: ScenarioSpec, where: str) -> None:
    """The config's modalities must be the ones the bundle was trained on, with the same tensors and labels."""
    problems = []
    if set(spec.modalities) != set(trained.modalities):  # order may differ: feeds go by name, the mask is reordered
        problems.append(f"modalities {sorted(spec.modalities)} != the bundle's {sorted(trained.modalities)}")
    for name, m in spec.modalities.items():
        t = trained.modalities.get(name)
        if t is None:
            continue
        for key in ("kind", "rate_hz", "window_s", "shape", "channels"):
            if getattr(m, key) != getattr(t, key):
                problems.append(f"modalities.{name}.{key}: {getattr(m, key)!r}, the bundle has {getattr(t, key)!r}")
    if spec.labels != trained.labels:
        problems.append("labels differ from the bundle's")
    for section in ("multilabel", "regression"):
        if getattr(spec, section) != getattr(trained, section):
            problems.append(f"{section} heads differ from the bundle's")
    if problems:
        raise BundleError(f"{where}: the config does not match the bundle: " + "; ".join(problems))


def group_of(source_id: str) -> str:
    """The sensor group of a source id: "g1/camera" -> "g1"; a bare modality name -> "" (the only group)."""
    return source_id.rsplit("/", 1)[0] if "/" in source_id else ""


# ---------------------------------------------------------------------------------------------------------------------


class Pipeline:
    """Runs `sources` through synchronizers, `model` and `publisher` (see the module docstring)."""

    def __init__(
        self,
        spec: ScenarioSpec,
        model: BoundModel,
        sources: dict[str, Any],
        publisher: Any = None,
        on_result: Callable[[str, dict], None] | None = None,
        metrics: Any = None,
        labels: list[tuple[int, int, dict[str, str]]] | None = None,
        tap: Callable[[Sample], None] | None = None,
        warmup_s: float = 0.0,
    ):
        self.spec, self.model, self.sources, self.publisher = spec, model, sources, publisher
        self.on_result, self.metrics, self.tap = on_result, metrics, tap
        # latency percentiles leave out ticks before this many seconds (opening devices, the first inference)
        self.warmup_ns = round(warmup_s * 1e9)
        self._t_start_ns = 0
        # ground truth when no synthetic world knows it: label segments in monotonic ns (a replayed session's)
        self.label_segments = labels or []
        self._label_starts = [seg[0] for seg in self.label_segments]
        rt = spec.runtime
        self.names = spec.modality_names
        self.drops = Drops()
        self.rec = Recorders()
        self.accuracy = Accuracy()
        self._wake = threading.Event()
        self.queues = {sid: SampleQueue(rt.queue_size, sid, self.drops, self._wake) for sid in sources}
        self.syncs: dict[str, Synchronizer] = {}
        self.groups = sorted({group_of(sid) for sid in sources}) or [""]
        # ticks waiting for the output thread: a few batches' worth, drop-oldest (stale results are worth least)
        self.ticks_q = BoundedQueue(max(4 * rt.batch_max, 2 * len(self.groups)), "ticks", self.drops)
        self.worlds = {g: self._world_of(g) for g in self.groups}
        self._taps: dict[str, deque[Sample]] = {sid: deque(maxlen=MONITOR_TAP) for sid in sources}
        self._closed_stats: dict[str, dict[str, Any]] = {}  # each source's stats just before its thread closed it
        self.stop_event = threading.Event()
        self.threads: list[threading.Thread] = []
        self.counts = {"ticks": 0, "published": 0, "batches": 0, "incomplete": 0}
        self.missing = dict.fromkeys(self.names, 0)
        self.errors: list[str] = []
        self.t_start = self.t_stop = 0.0
        self._next_monitor = 0.0
        self._next_metrics = 0.0

    def _world_of(self, group: str) -> Any:
        for sid, src in self.sources.items():
            if group_of(sid) == group and getattr(src, "world", None) is not None:
                return src.world
        return None

    def sync_for(self, group: str) -> Synchronizer:
        s = self.syncs.get(group)
        if s is None:
            s = self.syncs[group] = Synchronizer(self.spec, group, self.drops, self.model.text_settings)
        return s

    # -- live ---------------------------------------------------------------------------------------------------------
    def start(self) -> None:
        """Open the sources and start every thread."""
        self.t_start = time.monotonic()
        self._t_start_ns = monotonic_ns()
        for g in self.groups:
            self.sync_for(g)
        opened: list[Any] = []
        for sid, src in self.sources.items():
            if hasattr(src, "describe"):
                log.info("%s", src.describe())  # one start-up line per source: modality, type, device, rate, live
            try:
                src.open()
            except Exception:
                for o in opened:  # a required source failed: release the ones already open, then report
                    o.close()
                raise
            opened.append(src)
            self.threads.append(threading.Thread(target=self._pump, args=(sid, src), name=f"source-{sid}", daemon=True))
        self.threads.append(threading.Thread(target=self._sync_loop, name="sync", daemon=True))
        self.threads.append(threading.Thread(target=self._output_loop, name="output", daemon=True))
        for t in self.threads:
            t.start()

    def stop(self, timeout_s: float = 5.0) -> None:
        """Stop every thread, close the sources, join; safe to call twice."""
        self.stop_event.set()
        self._wake.set()
        deadline = time.monotonic() + timeout_s
        for t in self.threads:
            t.join(max(0.0, deadline - time.monotonic()))
        stuck = [t.name for t in self.threads if t.is_alive()]
        if stuck:
            self.errors.append(f"threads still running after {timeout_s}s: {stuck}")
        self.threads = []
        if not self.t_stop:
            self.t_stop = time.monotonic()

    def run(self, duration_s: float | None = None, stop: threading.Event | None = None) -> dict[str, Any]:
        """Start, run until `duration_s` passes or `stop` is set (or a thread fails), stop; returns the summary."""
        self.start()
        try:
            end = None if duration_s is None else time.monotonic() + duration_s
            while not self.stop_event.is_set() and not (stop is not None and stop.is_set()):
                left = 0.2 if end is None else min(0.2, end - time.monotonic())
                if left <= 0:
                    break
                (stop or self.stop_event).wait(left)
        finally:
            self.stop()
        return self.summary()

    def _pump(self, sid: str, src: Any) -> None:
        q = self.queues[sid]
        try:
            while not self.stop_event.is_set():
                for s in src.read(READ_TIMEOUT_S):
                    q.put(s)
                    if self.tap is not None:  # e.g. a SessionWriter recording the raw stream (non-blocking)
                        self.tap(s)
        except Exception as err:  # noqa: BLE001 - a source that breaks its never-raise contract stops the run
            self._fail(f"source {sid}: {type(err).__name__}: {err}")
        finally:
            self._closed_stats[sid] = dict(src.stats()) if hasattr(src, "stats") else {}  # as it was while running
            src.close()

    def _sync_loop(self) -> None:
        try:
            while not self.stop_event.is_set():
                self._wake.wait(self._sleep_s())
                self._wake.clear()
                self._sync_step(monotonic_ns())
        except Exception as err:  # noqa: BLE001 - reported in the summary, the run stops
            self._fail(f"sync: {type(err).__name__}: {err}")

    def _sleep_s(self) -> float:
        wake = [w for s in self.syncs.values() if (w := s.next_wakeup_ns()) is not None]
        if not wake:
            return 0.05
        return min(0.05, max(0.0, (min(wake) - monotonic_ns()) / 1e9))

    def _sync_step(self, now_ns: int) -> None:
        arrived: list[tuple[int, Synchronizer, Sample]] = []
        for sid, q in self.queues.items():
            t_put = q.t_last_put
            items = q.drain()
            if items:
                sync = self.sync_for(group_of(sid))
                sync.note_arrival(t_put)
                arrived.extend((s.t_arrival_ns, sync, s) for s in items)
                self._taps[sid].extend(items)
        if arrived:  # fed in arrival order, each after the ticks whose deadline passed before it (as drive() does)
            arrived.sort(key=lambda a: a[0])
            for _, sync, s in arrived:
                for tick in sync.feed(s):
                    self.ticks_q.put(tick)
            now_ns = max(now_ns, arrived[-1][0])
        for sync in self.syncs.values():
            for tick in sync.poll(now_ns):
                self.ticks_q.put(tick)

    def _output_loop(self) -> None:
        rt = self.spec.runtime
        last_result = time.monotonic()
        try:
            while not (self.stop_event.is_set() and len(self.ticks_q) == 0):
                first = self.ticks_q.get(timeout=0.05)
                if first is not None:
                    self._process(self._gather(first, rt.batch_max, rt.batch_deadline_ms / 1e3))
                    last_result = time.monotonic()
                if first is not None or time.monotonic() - last_result > MONITOR_IDLE_S:
                    # right after a result, when the next tick is furthest off: monitoring work (thumbnails, stats)
                    # then never competes with a tick's assembly for the GIL; without ticks, on its own clock
                    self._maybe_monitor()
        except Exception as err:  # noqa: BLE001 - a backend failure stops the run with its message
            self._fail(f"output: {type(err).__name__}: {err}")

    def _gather(self, first: Tick, batch_max: int, deadline_s: float) -> list[Tick]:
        """More ticks for the batch until it is full, holds one tick of every group, or the deadline passes."""
        batch, groups = [first], {first.group}
        first.stamps["dequeued"] = monotonic_ns()
        end = time.monotonic() + deadline_s
        while len(batch) < batch_max and len(groups) < len(self.groups):
            left = end - time.monotonic()
            tick = self.ticks_q.get(timeout=left) if left > 0 else None
            if tick is None:
                break
            tick.stamps["dequeued"] = monotonic_ns()
            batch.append(tick)
            groups.add(tick.group)
        return batch

    def _fail(self, message: str) -> None:
        self.errors.append(message)
        self.stop_event.set()

    # -- model and results (shared by live and replay) ---------------------------------------------------------------
    def _process(self, batch: list[Tick]) -> None:
        t_batched = monotonic_ns()
        feeds = self.model.feeds(batch, self.names)
        t_infer = monotonic_ns()
        outputs = self.model.backend.run(feeds)
        scorer = self.model.anomaly  # the anomaly model runs on the same feeds; its time counts as inference
        anomaly = scorer.run(feeds) if scorer is not None else None
        t_done = monotonic_ns()
        self.counts["batches"] += 1
        self.rec.add("batch_size", len(batch))
        if self.metrics is not None:
            self.metrics.observe_inference((t_done - t_infer) / 1e9, len(batch), self.model.backend.name)
        for i, tick in enumerate(batch):
            tick.stamps.update(batched=t_batched, infer_start=t_infer, infer_end=t_done)
            more = self.model.head_results(outputs, i)
            if anomaly is not None:
                more["anomaly"] = scorer.result(anomaly, i, feeds["mask"][i])
            self._emit(tick, self.model.scores(outputs, i), more)

    def _emit(self, tick: Tick, scores: dict[str, dict[str, float]], more: dict[str, Any] | None = None) -> None:
        st = tick.stamps
        labels = tick.labels
        world = self.worlds.get(tick.group)
        if labels is None and world is not None:
            labels = world.labels_at(tick.t_tick_ns)
        elif labels is None and self.label_segments:
            labels = label_at(self.label_segments, self._label_starts, tick.t_tick_ns)
        extra = {"truth": labels} if labels else None
        if more:
            extra = {**(extra or {}), **more}
            self._count_alert(tick.group, more.get("anomaly"))
        mask = {m: bool(tick.mask[i]) for i, m in enumerate(self.names)}
        payload = result_payload(tick.t_tick_ns, tick.capture_ns, mask, scores, {}, extra)
        t_pub = monotonic_ns()
        # latency of everything before publishing; the send itself is measured after and recorded, not published
        lat = _latency_ms(st, t_pub)
        payload["latency_ms"] = lat
        sent = self.publisher.result(tick.group, payload) if self.publisher is not None else True
        t_sent = monotonic_ns()
        self.counts["ticks"] += 1
        self.counts["published"] += int(sent)
        self.counts["incomplete"] += int(not tick.complete)
        for m, present in mask.items():
            self.missing[m] += int(not present)
        if st["synced"] - self._t_start_ns >= self.warmup_ns:
            for stage, ms in lat.items():
                self.rec.add(stage, ms)
            self.rec.add("publish_send", (t_sent - t_pub) / 1e6)
        for m, err in tick.sync_err_ns.items():
            if err is not None:
                self.rec.add(f"sync_error/{m}", err / 1e6)
        if labels:
            for head, label in payload["top"].items():
                self.accuracy.add(head, label, labels.get(head))
            for head, on in payload.get("multilabel", {}).items():  # exact match of the label set
                truth = labels.get(head)
                self.accuracy.add(
                    head,
                    "|".join(sorted(on)),
                    None if truth is None else "|".join(sorted(filter(None, truth.split("|")))),
                )
        if self.metrics is not None:
            self.metrics.observe_tick(tick.group, {k: v / 1e3 for k, v in lat.items()}, mask)
        if self.on_result is not None:
            self.on_result(tick.group, payload)

    def _count_alert(self, group: str, anomaly: dict[str, Any] | None) -> None:
        if anomaly is None:
            return
        self.counts["anomaly_alerts"] = self.counts.get("anomaly_alerts", 0) + int(anomaly["alert"])
        if self.metrics is not None:
            self.metrics.observe_anomaly(group, anomaly["score"], anomaly["alert"])

    # -- monitoring ---------------------------------------------------------------------------------------------------
    def _maybe_monitor(self) -> None:
        now = time.monotonic()
        if self.metrics is not None and now >= self._next_metrics:  # Prometheus, whether or not monitor topics are on
            self._next_metrics = now + 1.0
            for sid, st in self.source_stats().items():
                self.metrics.observe_source_stats(sid, st)
            if self.publisher is not None:
                self.metrics.observe_publisher(self.publisher.failures)
        hz = self.spec.runtime.publish.monitor_hz
        if self.publisher is None or hz <= 0 or now < self._next_monitor:
            return
        self._next_monitor = now + 1.0 / hz
        self.publisher.stats(self.stats_payload())
        for sid, tap in self._taps.items():
            items = [tap.popleft() for _ in range(len(tap))]
            if items:
                self._monitor_source(sid, items)

    def _monitor_source(self, sid: str, items: list[Sample]) -> None:
        m = self.spec.modalities.get(sid.rsplit("/", 1)[-1])
        last = items[-1]
        group = group_of(sid)
        if m is None or isinstance(last.data, str):
            return
        if m.kind == "image":
            self.publisher.thumb(sid, last.data, last.t_capture_ns, group)
        elif m.kind == "audio":
            self.publisher.level(sid, np.asarray(last.data).reshape(len(last.data), -1), last.t_capture_ns, group)
        elif m.kind == "series":
            rows = np.concatenate([np.asarray(s.data, np.float32).reshape(-1, m.n_channels) for s in items])  # (n, C)
            self.publisher.series(sid, rows, items[0].t_capture_ns, m.rate_hz, list(m.channels), group)

    def source_stats(self) -> dict[str, dict[str, Any]]:
        """Per source: its own stats() (rates, clock offset/drift, reconnects), queue depth and our drops."""
        by_source = self.drops.by_source()
        out = {}
        for sid, src in self.sources.items():
            st = self._closed_stats.get(sid) or (dict(src.stats()) if hasattr(src, "stats") else {})
            q = self.queues[sid]
            st.update(queue_depth=len(q), queue_high_water=q.high_water, dropped=by_source.get(sid, {}))
            out[sid] = st
        return out

    def stats_payload(self) -> dict[str, Any]:
        """The `stats` monitoring message."""
        return _plain(
            {
                "t_ns": monotonic_ns(),
                "sources": self.source_stats(),
                "drops": self.drops.by_reason(),
                "latency_ms": {k: v for k, v in self.rec.percentiles().items() if k in LATENCY_STAGES},
                "ticks": self.counts["ticks"],
                "published": self.counts["published"],
            }
        )

    # -- replay -------------------------------------------------------------------------------------------------------
    def replay(self, samples: Iterable[Sample], realtime: bool = False, stop: threading.Event | None = None) -> None:
        """Single-threaded: push samples (given in capture order) in arrival order, poll on their recorded clock,
        batch, infer, publish.

        Deterministic: ticks depend only on the samples' timestamps, and a batch is the ticks one step emitted
        (cut at batch_max), so the same session gives the same results. realtime=True paces by arrival times.
        """
        self.t_start = time.monotonic()
        now = t0_rec = None
        t0_wall = time.monotonic()
        for s in in_arrival_order(samples):
            if stop is not None and stop.is_set():
                break
            now = s.t_arrival_ns if now is None else max(now, s.t_arrival_ns)
            t0_rec = now if t0_rec is None else t0_rec
            if realtime:
                time.sleep(max(0.0, (now - t0_rec) / 1e9 - (time.monotonic() - t0_wall)))
            sync = self.sync_for(group_of(s.source))
            early = [tk for g in sorted(self.syncs) for tk in self.syncs[g].poll(now - 1)]  # deadlines before it
            sync.push(s)
            self._taps.setdefault(s.source, deque(maxlen=MONITOR_TAP)).append(s)
            self._replay_ticks(early + [tk for g in sorted(self.syncs) for tk in self.syncs[g].poll(now)])
            self._maybe_monitor()
        self._replay_ticks([tk for g in sorted(self.syncs) for tk in self.syncs[g].flush()])
        self.t_stop = time.monotonic()

    def _replay_ticks(self, ticks: list[Tick]) -> None:
        bmax = self.spec.runtime.batch_max
        for i in range(0, len(ticks), bmax):
            batch = ticks[i : i + bmax]
            for tk in batch:  # the recorded clock is not this machine's: latency counts from the emit
                tk.stamps["data"] = tk.stamps["ready"] = tk.stamps["tick"] = tk.stamps["sync_start"]
                tk.stamps["dequeued"] = tk.stamps["synced"]
            self._process(batch)

    # -- summary ------------------------------------------------------------------------------------------------------
    def summary(self) -> dict[str, Any]:
        """The run summary (JSON-able): counts, drops, latency percentiles, sync error, accuracy, sources."""
        pct = self.rec.percentiles()
        sync_err = {k.split("/", 1)[1]: v["p99"] for k, v in pct.items() if k.startswith("sync_error/")}
        pub = self.publisher
        return _plain(
            {
                "duration_s": round((self.t_stop or time.monotonic()) - self.t_start, 3),
                "groups": len(self.syncs) or len(self.groups),
                "ticks": self.counts["ticks"],
                "published": self.counts["published"],
                "publish_failures": dict(pub.failures) if pub is not None else {},
                "batches": self.counts["batches"],
                "ticks_incomplete": self.counts["incomplete"],
                "ticks_skipped": sum(s.skipped for s in self.syncs.values()),
                "missing": self.missing,
                # per group and modality: window takes by path (sample-contiguous runs / resampled) and stale masks
                "sync_paths": {g or "g0": sync.stats() for g, sync in sorted(self.syncs.items())},
                "drops": self.drops.by_reason(),
                "e2e_ms": pct.get("e2e", _none()),
                "overhead_ms": pct.get("overhead", _none()),
                "latency_ms": {k: v for k, v in pct.items() if k in LATENCY_STAGES or k == "publish_send"},
                "batch_size": pct.get("batch_size", _none()),
                "sync_error_ms": sync_err,
                "online_accuracy": self.accuracy.summary(),
                "anomaly_alerts": self.counts.get("anomaly_alerts"),  # None: the bundle has no anomaly model
                "sources": self.source_stats(),
                "backend": self.model.backend.describe(),  # what exactly ran: backend, precision, device, file
                "endpoint": getattr(pub, "endpoint", None),
                "errors": self.errors,
            }
        )


LATENCY_STAGES = ("wait", "sync", "queue", "batch", "stack", "infer", "publish", "e2e", "overhead")


def _latency_ms(st: dict[str, int], t_pub: int) -> dict[str, float]:
    # runs on every result: plain arithmetic, no closures or dict copies
    infer_end = st["infer_end"]
    batch = round((st["batched"] - st["dequeued"]) / 1e6, 4)
    infer = round((infer_end - st["infer_start"]) / 1e6, 4)
    e2e = round((t_pub - st["data"]) / 1e6, 4)
    return {
        "wait": max(round((st["ready"] - st["tick"]) / 1e6, 4), 0.0),
        "sync": round((st["synced"] - st["sync_start"]) / 1e6, 4),
        "queue": round((st["dequeued"] - st["synced"]) / 1e6, 4),
        "batch": batch,
        "stack": round((st["infer_start"] - st["batched"]) / 1e6, 4),
        "infer": infer,
        "publish": round((t_pub - infer_end) / 1e6, 4),
        "e2e": e2e,
        "overhead": round(max(0.0, e2e - infer - batch), 4),
    }


def _none() -> dict[str, None]:
    return {"p50": None, "p99": None}


def _plain(obj: Any) -> Any:
    """NumPy scalars and tuples -> plain JSON/msgpack values."""
    if isinstance(obj, dict):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, float) and obj != obj:  # NaN has no JSON
        return None
    return obj
