"""Hostile input and stuck peers (issue 11): the three targets, measured against the real programs on loopback.

    python benchmarks/bench_hostile.py                                   # ~2 minutes; builds an untrained bundle
    python benchmarks/bench_hostile.py --bundle runs/demo/bundle --messages 100000 --markdown BENCHMARKS.md

1. Sensor traffic: a live `edgefuse run` (subprocess) whose ZeroMQ env sensor gets --messages hostile messages
   (extreme numerics, deep and huge JSON/msgpack, garbage, floods, 5 MiB frames, a new publisher name each time)
   between valid 10 Hz readings. Target: 0 exits, every bad message counted, env present on >= 95 % of ticks.
2. A stuck subscriber: a Publisher with a tiny HWM and 4 KiB socket buffers, one subscriber that never reads and one
   that reads every message, for as many messages as a runtime publishes in 20 minutes. Target: the good
   subscriber receives every message. The pre-issue-11 behaviour (XPUB_NODROP alone) runs the same traffic for
   contrast.
3. SIGKILL during `edgefuse record`, --kills times. Target: labels kept, at most one chunk lost, every session
   replays (`edgefuse replay --fast` exits 0).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import signal
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import msgpack
import numpy as np
import yaml
import zmq
from _sections import write_section

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "configs" / "smart_home.yaml"
CHANNELS = ["motion", "door", "temperature", "humidity", "light", "smoke"]
PY = [sys.executable, "-m", "edgefuse.cli"]


def build_bundle(out: Path) -> Path:
    """The smart_home model with untrained weights, exported: enough to run the runtime end to end."""
    import torch

    from edgefuse.deploy.export import export_bundle
    from edgefuse.spec import load_spec
    from edgefuse.trainer.checkpoint import save_run
    from edgefuse.trainer.models import build_model

    spec = load_spec(CONFIG)
    torch.manual_seed(0)
    save_run(out / "run", spec, build_model(spec).eval(), {}, {}, data_dir=out, n_samples=0, masked=[])
    export_bundle(out / "run", out / "bundle", parity_samples=2)
    return out / "bundle"


def free_endpoint() -> str:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"tcp://127.0.0.1:{s.getsockname()[1]}"


# -- 1. hostile sensor traffic against a live run --------------------------------------------------------------------


def hostile(kind: str, i: int, rng: np.random.Generator) -> bytes:
    """One hostile payload of `kind` (each one stopped the runtime or starved it before issue 11)."""
    ok = {"v": 1, "source": "evil", "seq": i, "t_sensor_ns": time.time_ns(), "channels": CHANNELS}
    row = [0.0] * 6
    if kind == "huge_int":
        return b'{"v":1,"source":"evil","seq":0,"t_sensor_ns":1,"values":[' + b"9" * 400 + b",0,0,0,0,0]}"
    if kind == "tiny_rate":
        return msgpack.packb({**ok, "values": [row, row], "rate_hz": 1e-300})
    if kind == "huge_rate":
        return msgpack.packb({**ok, "values": row, "rate_hz": 9.9e6})
    if kind == "deep_json":
        return b"{" + b"[" * 5000
    if kind == "deep_msgpack":
        return b"\x91" * 5000 + b"\x01"
    if kind == "int64_min_time":
        return msgpack.packb({**ok, "values": row, "t_sensor_ns": -(2**63)})
    if kind == "huge_seq":
        return json.dumps({**ok, "seq": 10**30, "values": row}).encode()
    if kind == "beyond_float32":
        return msgpack.packb({**ok, "values": [1e300] * 6})
    if kind == "nan":
        return msgpack.packb({**ok, "values": [float("nan")] * 6})
    if kind == "garbage":
        return rng.bytes(int(rng.integers(1, 300)))
    if kind == "wrong_types":
        return msgpack.packb({**ok, "values": {"a": 1}, "channels": 7})
    if kind == "huge_rows":  # ~350 KB of valid-looking rows: over the per-message row cap
        return msgpack.packb({**ok, "values": [[0] * 6] * 50_000})
    if kind == "flood":  # valid 150-row blocks from one publisher, far over its row budget
        return msgpack.packb({**ok, "source": "flood", "values": [[0.0] * 6] * 150, "rate_hz": 10.0})
    raise ValueError(kind)


KINDS = ("huge_int", "tiny_rate", "huge_rate", "deep_json", "deep_msgpack", "int64_min_time", "huge_seq",
         "beyond_float32", "nan", "garbage", "wrong_types", "flood")  # fmt: skip
RARE = {"oversized_frame": 5000, "huge_rows": 500, "new_name": 50}  # one in N messages (the first match wins)


def valid_sensor(sock: zmq.Socket, stop: threading.Event, sent: list[int]) -> None:
    """A real sensor on its own socket and thread: one reading every 100 ms, whatever the attacker does."""
    seq, t_next = 0, time.monotonic()
    while not stop.is_set():
        msg = {"v": 1, "source": "hall-env", "seq": seq, "t_sensor_ns": time.time_ns(), "channels": CHANNELS}
        sock.send_multipart([b"env", msgpack.packb({**msg, "values": [0, 0, 21.0, 40.0, 300.0, 0]})])
        seq += 1
        sent[0] = seq
        t_next += 0.1
        time.sleep(max(0.0, t_next - time.monotonic()))


def sensor_traffic(bundle: Path, n_messages: int, tmp: Path) -> dict[str, Any]:
    ctx = zmq.Context.instance()
    attacker = ctx.socket(zmq.XPUB)  # XPUB: sees the runtime (re)subscribe after each dropped connection
    attacker.setsockopt(zmq.LINGER, 0)
    attacker.setsockopt(zmq.SNDHWM, 0)
    port = attacker.bind_to_random_port("tcp://127.0.0.1")
    good = ctx.socket(zmq.PUB)
    good.setsockopt(zmq.LINGER, 0)
    good_port = good.bind_to_random_port("tcp://127.0.0.1")
    endpoint = free_endpoint()
    data = yaml.safe_load(CONFIG.read_text())
    uri = f"tcp://127.0.0.1:{port},tcp://127.0.0.1:{good_port}"  # one modality, two publishers
    data["modalities"]["env"]["source"] = {"type": "zmq", "uri": uri, "topic": "env"}
    data["runtime"].update(tick_hz=5, publish={"endpoint": endpoint, "monitor_hz": 2})
    cfg = tmp / "hostile.yaml"
    cfg.write_text(yaml.safe_dump(data))
    sub = ctx.socket(zmq.SUB)
    sub.setsockopt(zmq.LINGER, 0)
    sub.setsockopt_string(zmq.SUBSCRIBE, "result")
    sub.setsockopt_string(zmq.SUBSCRIBE, "stats")
    sub.connect(endpoint)
    run = subprocess.Popen(
        [*PY, "run", "--config", str(cfg), "--bundle", str(bundle), "--summary", str(tmp / "hostile.json")],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    if not attacker.poll(60_000):
        raise SystemExit("the runtime never subscribed to the sensor")
    attacker.recv()
    stop, valid_sent = threading.Event(), [0]
    sensor = threading.Thread(target=valid_sensor, args=(good, stop, valid_sent), daemon=True)
    sensor.start()
    steady_from = time.monotonic_ns() + 3_500_000_000  # env needs 60 % of its 4 s window of valid readings
    rng = np.random.default_rng(0)
    static = {k: hostile(k, 0, rng) for k in (*KINDS, "huge_rows") if k not in ("garbage", "flood")}
    sent: dict[str, int] = {}
    ticks: list[tuple[int, bool]] = []
    last_env: dict[str, Any] = {}

    def drain_runtime() -> None:
        while sub.poll(0):
            frames = sub.recv_multipart()
            p = msgpack.unpackb(frames[2])
            if frames[0].startswith(b"result"):
                ticks.append((p["t_tick_ns"], bool(p["mask"]["env"])))
            else:
                last_env.update(p["sources"].get("env", {}))

    per_10ms = 40  # ~4,000 hostile messages a second
    for i in range(1, n_messages + 1):
        if run.poll() is not None:
            break
        kind = next((k for k, every in RARE.items() if i % every == 0), KINDS[i % len(KINDS)])
        sent[kind] = sent.get(kind, 0) + 1
        if kind == "oversized_frame":  # above ZMQ_MAXMSGSIZE: libzmq drops the connection
            attacker.send_multipart([b"env", b"\x00" * (5 << 20)])
            t_wait = time.monotonic() + 5  # wait for the runtime to subscribe again (b"\x00" is the unsubscribe)
            while time.monotonic() < t_wait and not (attacker.poll(100) and attacker.recv()[:1] == b"\x01"):
                pass
        elif kind == "new_name":  # a valid reading under a new publisher name: fills the table, is evicted
            m = {"v": 1, "source": f"junk-{i}", "seq": 0, "t_sensor_ns": time.time_ns(), "values": [0.0] * 6}
            attacker.send_multipart([b"env", msgpack.packb(m)])
        else:
            attacker.send_multipart([b"env", static.get(kind) or hostile(kind, i, rng)])
        if i % per_10ms == 0:
            drain_runtime()
            while attacker.poll(0):
                attacker.recv()
            time.sleep(0.01)
    # let the runtime finish what is queued: until its stats stop changing (published twice a second)
    counted_by_app = sum(v for k, v in sent.items() if k not in ("oversized_frame", "new_name"))
    deadline, last, still = time.monotonic() + 120, -1, 0
    while run.poll() is None and time.monotonic() < deadline and still < 6:
        time.sleep(0.5)
        drain_runtime()
        total = sum(last_env.get("rejected", {}).values())  # the valid sensor keeps adding samples meanwhile
        still = still + 1 if total == last else 0
        last = total
    t_sent_end = time.monotonic_ns()
    stop.set()
    sensor.join()
    if run.poll() is None:
        run.send_signal(signal.SIGTERM)
    out, err = run.communicate(timeout=60)
    for s in (attacker, good, sub):
        s.close()
    summary = json.loads((tmp / "hostile.json").read_text()) if (tmp / "hostile.json").exists() else {}
    env = summary.get("sources", {}).get("env", {})
    rejected = env.get("rejected", {})
    # flood blocks within their publisher's row budget are valid data, not bad messages
    flood_ok = env.get("publishers", {}).get("flood", {}).get("accepted", 0)
    steady = [m for t, m in ticks if steady_from <= t <= t_sent_end]
    return {
        "exit_code": run.returncode,
        "errors": summary.get("errors"),
        "stderr_tail": err[-300:] if run.returncode else "",
        "bad_sent": sum(sent.values()),
        "sent": sent,
        "rejected": rejected,
        "rejected_total": sum(rejected.values()),
        "counted_by_app_expected": counted_by_app - flood_ok,
        "flood_within_budget": flood_ok,
        "disconnects": env.get("disconnects"),
        "evicted": env.get("evicted"),
        "probation": env.get("probation"),
        "valid_sent": valid_sent[0],
        "valid_accepted": env.get("publishers", {}).get("hall-env", {}).get("accepted"),
        "ticks": len(steady),
        "env_present_fraction": (sum(steady) / len(steady)) if steady else 0.0,
    }


# -- 2. a stuck subscriber -------------------------------------------------------------------------------------------


def stuck_subscriber(messages: int, legacy: bool) -> dict[str, Any]:
    """`messages` 20 KB results through a Publisher with HWM 50 and 4 KiB buffers; one subscriber never reads."""
    from edgefuse.runtime.publisher import Publisher
    from edgefuse.spec import PublishSpec
    from edgefuse.wire import decode, encode, result_payload

    ctx = zmq.Context()
    pub = Publisher(PublishSpec(endpoint="tcp://127.0.0.1:*", hwm=50), context=ctx)
    pub.sock.setsockopt(zmq.SNDBUF, 4096)

    def sub(*opts: tuple[int, int]) -> zmq.Socket:
        s = ctx.socket(zmq.SUB)
        for k, v in opts:
            s.setsockopt(k, v)
        s.setsockopt(zmq.LINGER, 0)
        s.setsockopt_string(zmq.SUBSCRIBE, "")
        s.connect(pub.endpoint)
        return s

    stuck, good = sub((zmq.RCVHWM, 1), (zmq.RCVBUF, 4096)), sub((zmq.RCVHWM, 100_000))
    payload = result_payload(0, {"cam": 1}, {"cam": True}, {"event": {"a": 0.9, "b": 0.1}}, {"e2e": 1.0})
    payload["pad"] = "x" * 20_000
    time.sleep(0.5)  # both subscriptions propagate
    got, worst, seqs, first_gap = 0, 0.0, [], None
    t_start = time.monotonic()
    for n in range(messages):
        t0 = time.perf_counter()
        if legacy:  # before issue 11: XPUB_NODROP alone; a full subscriber made the send fail for everyone
            try:
                pub.sock.send_multipart(encode("result", "result", n, 0, "", payload), flags=zmq.NOBLOCK)
            except zmq.Again:
                pub.failures["hwm"] = pub.failures.get("hwm", 0) + 1
        else:
            pub.result("", payload)
        worst = max(worst, time.perf_counter() - t0)
        if good.poll(20 if legacy else 200):  # the healthy subscriber reads each message as it comes
            seqs.append(decode(good.recv_multipart()).header["seq"])
            got += 1
        elif first_gap is None:
            first_gap = n
    elapsed = time.monotonic() - t_start
    failures = dict(pub.failures)
    for s in (stuck, good):
        s.close()
    pub.close()
    ctx.term()
    contiguous = seqs == list(range(seqs[0], seqs[0] + len(seqs))) if seqs else False
    return {
        "mode": "XPUB_NODROP only (before)" if legacy else "count and resend lossy (now)",
        "sent": messages,
        "good_received": got,
        "good_in_order": contiguous,
        "first_message_missed": first_gap,
        "failures": failures,
        "worst_send_ms": worst * 1e3,
        "seconds": elapsed,
    }


# -- 3. SIGKILL during record ----------------------------------------------------------------------------------------


def sigkill_record(bundle: Path, kills: int, tmp: Path) -> list[dict[str, Any]]:
    from edgefuse.runtime.clock import monotonic_ns
    from edgefuse.runtime.record import SessionReader

    data = yaml.safe_load(CONFIG.read_text())
    rows = []
    rng = np.random.default_rng(1)
    for k in range(kills):
        data["runtime"]["publish"] = {"endpoint": free_endpoint(), "monitor_hz": 0}
        cfg = tmp / f"rec{k}.yaml"
        cfg.write_text(yaml.safe_dump(data))
        out = tmp / f"session{k}"
        p = subprocess.Popen([*PY, "record", "--config", str(cfg), "--out", str(out), "--duration", "60"],
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)  # fmt: skip
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not (
            (out / "streams").exists()
            and len([f for f in (out / "streams").glob("*.efs") if f.stat().st_size > 1024]) == 3
        ):
            time.sleep(0.05)
        time.sleep(float(rng.uniform(1.5, 4.0)))  # kill at a random point, mid-chunk as often as not
        t_kill = monotonic_ns()
        p.send_signal(signal.SIGKILL)
        p.wait(10)
        r = SessionReader(out)
        chunk_s = r.meta["chunk_s"]
        lost = {}
        for sid in r.sources:
            samples = list(r.iter_source(sid))
            lost[sid] = (t_kill - samples[-1].t_arrival_ns) / 1e9 if samples else None
        labels = r.labels() or []
        label_end = labels[-1][1] if labels else None
        label_lost_s = (t_kill - r.start_ns) / 1e9 - label_end if label_end is not None else None
        rep = subprocess.run([*PY, "replay", "--session", str(out), "--bundle", str(bundle), "--fast",
                              "--endpoint", free_endpoint(), "--summary", str(tmp / f"replay{k}.json")],
                             capture_output=True, text=True)  # fmt: skip
        ticks = json.loads((tmp / f"replay{k}.json").read_text())["ticks"] if rep.returncode == 0 else 0
        rows.append({
            "recorded_s": (t_kill - r.start_ns) / 1e9,
            "chunk_s": chunk_s,
            "lost_s": lost,
            "max_lost_s": max(v for v in lost.values() if v is not None),
            "label_rows": len(labels),
            "labels_lost_s": label_lost_s,
            "corrupt": sum(len(rep_.corrupt) for rep_ in r.reports.values()),
            "replay_exit": rep.returncode,
            "replay_ticks": ticks,
        })  # fmt: skip
    return rows


# -- report ----------------------------------------------------------------------------------------------------------


def markdown(res: dict[str, Any], cmd: str) -> str:
    a, b, c = res["sensor"], res["stuck"], res["sigkill"]
    # one chunk period plus the writer's queue poll and one source read step (runtime/record.py)
    lost_bound = c[0]["chunk_s"] * 1.25 + 0.05 + 0.1 if c else 0.0
    lines = [
        "## Hostile input and stuck peers (issue 11)",
        "",
        f"Measured {datetime.now(timezone.utc).isoformat(timespec='minutes')} with `{cmd}` on {os.cpu_count()} cores "
        f"shared with other work (load average {res['load'][0]:.1f} at the start, {res['load'][1]:.1f} at the end); "
        "loopback only; an untrained smart_home bundle (the model's accuracy plays no part here).",
        "",
        f"**Sensor traffic** into a live `edgefuse run` (env from a ZeroMQ sensor, 5 ticks/s): {a['bad_sent']:,} hostile "
        f"messages at up to ~4,000/s, while a real sensor on its own socket sent {a['valid_sent']} valid readings at "
        f"10 Hz; {a['valid_accepted']} of them became samples.",
        "",
        "| target | result |",
        "|---|---|",
        f"| 0 exits | exit code {a['exit_code']}, summary errors {a['errors']} |",
        f"| every bad message counted | {a['rejected_total']:,} rejected by reason for {a['counted_by_app_expected']:,} "
        f"sent that reach the decoder ({a['flood_within_budget']} flood blocks fit their publisher's budget and were data); {a['sent'].get('oversized_frame', 0)} frames above ZMQ_MAXMSGSIZE cost "
        f"{a['disconnects']} connection(s), each reconnected at once; {a['sent'].get('new_name', 0)} valid readings "
        f"under new names: {a['evicted']} stale names evicted, {a['probation']} first readings held on probation |",
        f"| valid data on >= 95 % of ticks | env present on {a['env_present_fraction']:.1%} of {a['ticks']} ticks "
        f"from 3.5 s in (env needs 60 % of its 4 s window) |",
        "",
        f"Rejected by reason: {', '.join(f'{k} {v:,}' for k, v in sorted(a['rejected'].items()))}. "
        f"Sent by kind: {', '.join(f'{k} {v:,}' for k, v in sorted(a['sent'].items()))}.",
        "",
        f"**A stuck subscriber** (never reads; RCVHWM 1, 4 KiB buffers) beside a good one, {b[0]['sent']:,} results of "
        "20 KB through a Publisher with HWM 50 and a 4 KiB send buffer: the stuck one fills after ~60 messages, so it "
        "sits at its HWM for >99 % of the run; a runtime publishing ~12 messages/s sends this many in 20 minutes, "
        "and the default buffers first filled at 618 s in the issue's soak.",
        "",
        "| mode | good subscriber received | in order, no gap | publish failures | worst send |",
        "|---|---|---|---|---|",
    ]
    for r in b:
        lines.append(
            f"| {r['mode']} | {r['good_received']:,} / {r['sent']:,} | {'yes' if r['good_in_order'] else 'no'} | "
            f"{r['failures'] or 'none'} | {r['worst_send_ms']:.2f} ms |"
        )
    lines += [
        "",
        f"**SIGKILL during `edgefuse record`**, {len(c)} times at a random point 1.5-4 s after every stream had data "
        f"(chunk_s {c[0]['chunk_s'] if c else '?'} s; one chunk period plus the writer's poll and a read step is "
        f"{lost_bound:.2f} s):",
        "",
        "| recorded s | most lost by a stream s | labels: rows, lost s | corrupt chunks | replay exit, ticks |",
        "|---|---|---|---|---|",
    ]
    for r in c:
        lab = "none" if r["labels_lost_s"] is None else f"{r['label_rows']}, {r['labels_lost_s']:.2f}"
        lines.append(
            f"| {r['recorded_s']:.1f} | {r['max_lost_s']:.2f} | {lab} | {r['corrupt']} | "
            f"{r['replay_exit']}, {r['replay_ticks']} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--bundle", default=None, help="a smart_home bundle (default: build an untrained one)")
    p.add_argument("--messages", type=int, default=100_000, help="hostile sensor messages")
    p.add_argument("--stuck-messages", type=int, default=14_400, help="results sent past the stuck subscriber")
    p.add_argument("--kills", type=int, default=5, help="SIGKILLs during record")
    p.add_argument("--json", default=None)
    p.add_argument("--markdown", default=None, help="BENCHMARKS.md to update (its hostile section only)")
    args = p.parse_args(argv)
    load0 = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as td:
        tmp = Path(td)
        bundle = Path(args.bundle) if args.bundle else build_bundle(tmp / "home")
        res: dict[str, Any] = {}
        t0 = time.monotonic()
        res["sensor"] = sensor_traffic(bundle, args.messages, tmp)
        print(json.dumps(res["sensor"], indent=1), f"({time.monotonic() - t0:.0f} s)", flush=True)
        t0 = time.monotonic()
        res["stuck"] = [stuck_subscriber(args.stuck_messages, legacy=False), stuck_subscriber(500, legacy=True)]
        print(json.dumps(res["stuck"], indent=1), f"({time.monotonic() - t0:.0f} s)", flush=True)
        t0 = time.monotonic()
        res["sigkill"] = sigkill_record(bundle, args.kills, tmp)
        print(json.dumps(res["sigkill"], indent=1), f"({time.monotonic() - t0:.0f} s)", flush=True)
    res["load"] = (load0, os.getloadavg()[0])
    cmd = "python benchmarks/bench_hostile.py " + shlex.join(argv if argv is not None else sys.argv[1:])
    print(markdown(res, cmd.strip()))
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=1, default=str))
    if args.markdown:
        write_section(Path(args.markdown), "hostile", markdown(res, cmd.strip()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
