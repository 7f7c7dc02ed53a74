"""`edgefuse doctor`: what this host offers each modality, and what a config still needs, with the fix.

    edgefuse doctor                                   # audio inputs, cameras, OpenCV, PortAudio, GPU, CUDA, TensorRT, ORT
    edgefuse doctor --config configs/jetson_usb.yaml  # plus, per modality of the config: missing pieces and fixes
    edgefuse doctor --json                            # the same as one JSON object

Everything is probed without opening a stream for long: PortAudio is asked which rates each input accepts, V4L2
devices are asked for their formats (VIDIOC_ENUM_FMT / VIDIOC_ENUM_FRAMESIZES), OpenCV for its build facts, a
ZeroMQ sensor endpoint is listened to for a second to show which topics arrive. The exit code is 1 when a modality
of --config is missing something, else 0.
"""

from __future__ import annotations

import argparse
import ctypes
import ctypes.util
import glob
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from edgefuse._optional import available

RATES = (8000, 16000, 22050, 32000, 44100, 48000, 96000)
PORTAUDIO_FIX = "apt-get install libportaudio2"
OPENCV_FIX = "pip install 'edgefuse[opencv]', or use a system OpenCV (JetPack's has GStreamer: docs/jetson.md)"


# ---------------------------------------------------------------------------------------------------------------------
# host facts


def audio_inputs() -> dict[str, Any]:
    """PortAudio version and every input device with its channels, default rate and the rates it accepts."""
    from edgefuse.runtime.sources.microphone import load_sounddevice

    sd, why = load_sounddevice()
    if sd is None:
        return {"portaudio": None, "problem": why, "inputs": []}
    inputs = []
    for d in sd.query_devices():
        if d["max_input_channels"] <= 0:
            continue
        ok = []
        for r in RATES:
            try:
                sd.check_input_settings(device=d["index"], samplerate=r, channels=1)
                ok.append(r)
            except Exception:  # noqa: BLE001 - PortAudio raises PortAudioError or ValueError: not supported
                pass
        api = sd.query_hostapis(d["hostapi"])["name"]
        inputs.append(
            {"index": d["index"], "name": d["name"], "hostapi": api, "channels": d["max_input_channels"],
             "default_rate": d["default_samplerate"], "rates": ok}
        )  # fmt: skip
    default = sd.default.device[0] if sd.default.device[0] is not None and sd.default.device[0] >= 0 else None
    return {"portaudio": sd.get_portaudio_version()[1], "problem": None, "inputs": inputs, "default_input": default}


def v4l2_cameras() -> list[dict[str, Any]]:
    """/dev/video* capture devices: card name and formats (FOURCC, description, discrete sizes)."""
    out = []
    for dev in sorted(glob.glob("/dev/video*"), key=lambda p: (len(p), p)):
        try:
            out.append({"device": dev, **_v4l2_describe(dev)})
        except OSError as err:
            out.append({"device": dev, "problem": str(err)})
    return out


# ioctl numbers and struct sizes from linux/videodev2.h
_VIDIOC_QUERYCAP = 0x80685600  # _IOR('V', 0, struct v4l2_capability), 104 bytes
_VIDIOC_ENUM_FMT = 0xC0405602  # _IOWR('V', 2, struct v4l2_fmtdesc), 64 bytes
_VIDIOC_ENUM_FRAMESIZES = 0xC02C564A  # _IOWR('V', 74, struct v4l2_frmsizeenum), 44 bytes
_CAP_VIDEO_CAPTURE = 0x1


def _v4l2_describe(dev: str) -> dict[str, Any]:
    import fcntl
    import struct

    fd = os.open(dev, os.O_RDWR | os.O_NONBLOCK)
    try:
        cap = bytearray(104)
        fcntl.ioctl(fd, _VIDIOC_QUERYCAP, cap)
        card = bytes(cap[16:48]).split(b"\0")[0].decode(errors="replace")
        device_caps = struct.unpack_from("I", cap, 88)[0]
        formats = []
        for i in range(64):
            desc = bytearray(struct.pack("II", i, 1) + bytes(56))  # index, type = V4L2_BUF_TYPE_VIDEO_CAPTURE
            try:
                fcntl.ioctl(fd, _VIDIOC_ENUM_FMT, desc)
            except OSError:
                break
            pix = struct.unpack_from("I", desc, 44)[0]
            fourcc = pix.to_bytes(4, "little").decode(errors="replace")
            name = bytes(desc[12:44]).split(b"\0")[0].decode(errors="replace")
            formats.append({"fourcc": fourcc, "description": name, "sizes": _v4l2_sizes(fd, pix)})
        return {"card": card, "capture": bool(device_caps & _CAP_VIDEO_CAPTURE), "formats": formats}
    finally:
        os.close(fd)


def _v4l2_sizes(fd: int, pixelformat: int) -> list[str]:
    import fcntl
    import struct

    sizes = []
    for i in range(64):
        buf = bytearray(struct.pack("III", i, pixelformat, 0) + bytes(32))
        try:
            fcntl.ioctl(fd, _VIDIOC_ENUM_FRAMESIZES, buf)
        except OSError:
            break
        kind = struct.unpack_from("I", buf, 8)[0]
        if kind == 1:  # discrete
            w, h = struct.unpack_from("II", buf, 12)
            sizes.append(f"{w}x{h}")
        else:  # stepwise / continuous: min .. max
            wmin, wmax, _, hmin, hmax, _ = struct.unpack_from("6I", buf, 12)
            sizes.append(f"{wmin}x{hmin}..{wmax}x{hmax}")
            break
    return sizes


def opencv() -> dict[str, Any]:
    try:
        import cv2
    except ImportError as err:
        return {"problem": f"no cv2 ({err}); {OPENCV_FIX}"}
    from edgefuse.runtime.sources.camera import opencv_facts

    return opencv_facts(cv2)


def gpu() -> dict[str, Any]:
    """NVIDIA GPUs (nvidia-smi), the Jetson model, and the CUDA runtime library's version."""
    out: dict[str, Any] = {"gpus": [], "jetson": None, "cuda_runtime": None}
    if shutil.which("nvidia-smi"):
        try:
            r = subprocess.run(
                ["nvidia-smi", "--query-gpu=name,driver_version,memory.total", "--format=csv,noheader"],
                capture_output=True, text=True, timeout=10,
            )  # fmt: skip
            out["gpus"] = [line.strip() for line in r.stdout.splitlines() if line.strip()]
        except (OSError, subprocess.TimeoutExpired) as err:
            out["gpus"] = [f"nvidia-smi failed: {err}"]
    model = Path("/proc/device-tree/model")
    if Path("/etc/nv_tegra_release").exists() or (model.exists() and "jetson" in model.read_text().lower()):
        release = Path("/etc/nv_tegra_release")
        out["jetson"] = {
            "model": model.read_text().strip("\0\n ") if model.exists() else None,
            "l4t": release.read_text().splitlines()[0] if release.exists() else None,
        }
    lib = ctypes.util.find_library("cudart")
    for name in ([lib] if lib else []) + ["libcudart.so", "libcudart.so.12", "libcudart.so.13", "libcudart.so.11.0"]:
        try:
            cudart = ctypes.CDLL(name)
        except OSError:
            continue
        v = ctypes.c_int()
        if cudart.cudaRuntimeGetVersion(ctypes.byref(v)) == 0:
            out["cuda_runtime"] = f"{v.value // 1000}.{v.value % 1000 // 10}"
        break
    return out


def python_packages() -> dict[str, Any]:
    """TensorRT, pycuda and ONNX Runtime (with its execution providers), as importable here."""
    out: dict[str, Any] = {}
    for mod in ("tensorrt", "pycuda"):
        if available(mod):
            m = __import__(mod)
            out[mod] = getattr(m, "__version__", getattr(m, "VERSION", "?"))
        else:
            out[mod] = None
    try:
        import onnxruntime as ort

        out["onnxruntime"] = {"version": ort.__version__, "providers": ort.get_available_providers()}
    except ImportError:
        out["onnxruntime"] = None
    return out


# ---------------------------------------------------------------------------------------------------------------------
# a config's needs


def check_config(path: str, host: dict[str, Any]) -> dict[str, Any]:
    """Per modality of the config: its source, what is missing on this host, and the fix for each."""
    from edgefuse.spec import load_spec

    spec = load_spec(path)
    out: dict[str, Any] = {}
    for name, m in spec.modalities.items():
        src = m.source
        problems: list[dict[str, str]] = []
        checker = _CHECKS.get(src.type)
        if checker is not None:
            checker(m, host, problems)
        out[name] = {"source": src.type, "uri": src.uri, "required": src.required, "ok": not problems,
                     "problems": problems}  # fmt: skip
    backend = spec.runtime.model.backend
    ort = host["packages"].get("onnxruntime")
    if backend in ("tensorrt",) and not host["packages"].get("tensorrt"):
        out["runtime.model"] = {"source": backend, "ok": False, "problems": [
            {"problem": "tensorrt is not importable", "fix": "JetPack's tensorrt (docs/jetson.md) or 'edgefuse[trt]'"}
        ]}  # fmt: skip
    elif backend == "onnxruntime" and ort is None:
        out["runtime.model"] = {"source": backend, "ok": False, "problems": [
            {"problem": "onnxruntime is not importable", "fix": "pip install onnxruntime (or onnxruntime-gpu)"}
        ]}  # fmt: skip
    return out


def _check_camera(m: Any, host: dict[str, Any], problems: list[dict[str, str]]) -> None:
    from edgefuse.runtime.sources.camera import uri_kind

    cv = host["opencv"]
    if "problem" in cv:
        problems.append({"problem": cv["problem"], "fix": OPENCV_FIX})
        return
    uri = m.source.uri or ""
    kind = uri_kind(uri)
    if kind == "pipeline" and not cv["gstreamer"]:
        problems.append({"problem": f"the OpenCV at {cv['path']} has no GStreamer; pipelines cannot open",
                         "fix": "use JetPack's OpenCV (docs/jetson.md) and pip uninstall opencv-python-headless"})  # fmt: skip
    elif kind == "device":
        dev = f"/dev/video{uri}" if uri.isdigit() else uri
        cams = {c["device"]: c for c in host["cameras"]}
        if dev not in cams:
            problems.append(
                {"problem": f"no camera at {dev}", "fix": "plug the camera in; `ls /dev/video*` lists them"}
            )
        elif m.source.fourcc and cams[dev].get("formats") is not None:
            fourccs = [f["fourcc"] for f in cams[dev]["formats"]]
            if m.source.fourcc not in fourccs:
                problems.append({"problem": f"{dev} offers {fourccs}, not {m.source.fourcc}",
                                 "fix": f"set source.fourcc to one of {fourccs}"})  # fmt: skip
        if not cv["v4l2"]:
            problems.append({"problem": "this OpenCV has no V4L2 backend", "fix": OPENCV_FIX})
    elif kind == "file" and not Path(uri).exists():
        problems.append({"problem": f"no such file: {uri}", "fix": "fix source.uri"})
    elif kind == "stream" and not cv["ffmpeg"] and not cv["gstreamer"]:
        problems.append({"problem": "this OpenCV has neither FFmpeg nor GStreamer for streams", "fix": OPENCV_FIX})


def _check_microphone(m: Any, host: dict[str, Any], problems: list[dict[str, str]]) -> None:
    audio = host["audio"]
    if audio["problem"]:
        problems.append({"problem": audio["problem"], "fix": f"{PORTAUDIO_FIX}; pip install 'edgefuse[audio]'"})
        return
    if not available("soxr"):
        problems.append({"problem": "soxr (the resampler) is not importable", "fix": "pip install 'edgefuse[audio]'"})
    from edgefuse.runtime.sources.microphone import load_sounddevice

    sd, _ = load_sounddevice()
    uri = m.source.uri
    device = int(uri) if uri and uri.isdigit() else uri
    try:
        info = sd.query_devices(device, "input")
    except (ValueError, sd.PortAudioError) as err:
        names = [d["name"] for d in audio["inputs"]]
        problems.append({"problem": f"input device {uri or 'default'!r}: {err}",
                         "fix": f"set source.uri to one of {names}" if names else "plug in a microphone"})  # fmt: skip
        return
    rate = m.source.device_rate_hz or info["default_samplerate"]
    ch = m.source.device_channels or min(int(info["max_input_channels"]), max(m.n_channels, 2))
    try:
        sd.check_input_settings(device=device, samplerate=rate, channels=ch)
    except (ValueError, sd.PortAudioError) as err:
        problems.append({"problem": f"{info['name']!r} refuses {rate:g} Hz x {ch} ch: {err}",
                         "fix": "set source.device_rate_hz / device_channels to what `edgefuse doctor` lists"})  # fmt: skip


def _check_zmq(m: Any, host: dict[str, Any], problems: list[dict[str, str]], listen_s: float = 1.0) -> None:
    """Listen to the endpoint(s) for a moment: are messages arriving, and on the configured topic?"""
    import zmq

    sock = zmq.Context.instance().socket(zmq.SUB)
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.SUBSCRIBE, b"")
    topics: dict[str, int] = {}
    try:
        for e in (m.source.uri or "").split(","):
            if e.strip():
                sock.connect(e.strip())
        end = time.monotonic() + listen_s
        while (left := end - time.monotonic()) > 0:
            if sock.poll(left * 1000):
                frames = sock.recv_multipart()
                t = frames[0].decode(errors="replace")
                topics[t] = topics.get(t, 0) + 1
    except zmq.ZMQError as err:
        problems.append({"problem": f"endpoint {m.source.uri!r}: {err}", "fix": "source.uri like tcp://host:5600"})
        return
    finally:
        sock.close(0)
    want = m.source.topic
    if not topics:
        problems.append({"problem": f"nothing arrived from {m.source.uri} in {listen_s:g} s",
                         "fix": "start the sensor publisher (examples/sensor_publisher.py) or fix source.uri"})  # fmt: skip
    elif not any(t.startswith(want) for t in topics):
        problems.append({"problem": f"messages arrive on topics {sorted(topics)}, none starting with {want!r}",
                         "fix": f"set source.topic to one of {sorted(topics)}"})  # fmt: skip


def _check_replay(m: Any, host: dict[str, Any], problems: list[dict[str, str]]) -> None:
    if not m.source.uri or not Path(m.source.uri).is_dir():
        problems.append({"problem": f"no session folder {m.source.uri!r}", "fix": "record one: edgefuse record"})


_CHECKS = {"camera": _check_camera, "microphone": _check_microphone, "zmq": _check_zmq, "replay": _check_replay}


# ---------------------------------------------------------------------------------------------------------------------


def collect(config: str | None = None) -> dict[str, Any]:
    """The whole report as a JSON-able dict."""
    from edgefuse import __version__

    host: dict[str, Any] = {
        "edgefuse": __version__,
        "python": sys.version.split()[0],
        "audio": audio_inputs(),
        "cameras": v4l2_cameras(),
        "opencv": opencv(),
        "gpu": gpu(),
        "packages": python_packages(),
    }
    if config:
        host["config"] = {"path": config, "modalities": check_config(config, host)}
    return host


def format_report(r: dict[str, Any]) -> str:
    lines = [f"edgefuse {r['edgefuse']} on Python {r['python']}"]
    a = r["audio"]
    lines.append(f"audio      PortAudio {a['portaudio']}" if a["portaudio"] else f"audio      {a['problem']}")
    for d in a["inputs"]:
        star = "*" if d["index"] == a.get("default_input") else " "
        lines.append(f"  {star}{d['index']:>2} {d['name']} ({d['hostapi']}): {d['channels']} ch, default "
                     f"{d['default_rate']:g} Hz, accepts {', '.join(str(x) for x in d['rates']) or 'none of ' + str(RATES)}")  # fmt: skip
    lines.append(f"cameras    {len(r['cameras'])} V4L2 device(s)")
    for c in r["cameras"]:
        if "problem" in c:
            lines.append(f"   {c['device']}: {c['problem']}")
            continue
        fmts = "; ".join(f"{f['fourcc']} {' '.join(f['sizes'][:4])}{' ...' if len(f['sizes']) > 4 else ''}"
                         for f in c["formats"])  # fmt: skip
        lines.append(f"   {c['device']}: {c['card']}{'' if c['capture'] else ' (no capture)'}: {fmts or 'no formats'}")
    cv = r["opencv"]
    if "problem" in cv:
        lines.append(f"opencv     {cv['problem']}")
    else:
        flags = ", ".join(f"{k} {'yes' if cv[k] else 'no'}" for k in ("gstreamer", "ffmpeg", "v4l2", "cuda"))
        lines.append(f"opencv     {cv['version']} from {cv['path']} ({flags})")
    g = r["gpu"]
    lines.append(f"gpu        {'; '.join(g['gpus']) or 'none found (nvidia-smi)'}")
    if g["jetson"]:
        lines.append(f"jetson     {g['jetson']['model']} ({g['jetson']['l4t']})")
    lines.append(f"cuda       runtime {g['cuda_runtime'] or 'not found (libcudart)'}")
    p = r["packages"]
    lines.append(f"tensorrt   {p['tensorrt'] or 'not importable'}")
    lines.append(f"pycuda     {p['pycuda'] or 'not importable'}")
    ort = p["onnxruntime"]
    lines.append(
        f"onnxruntime {ort['version']}: {', '.join(ort['providers'])}" if ort else "onnxruntime not importable"
    )
    if "config" in r:
        lines.append(f"config     {r['config']['path']}")
        for name, c in r["config"]["modalities"].items():
            lines.append(f"  {name:<10} {c['source']:<10} {'ok' if c['ok'] else 'MISSING'}")
            for pr in c["problems"]:
                lines.append(f"      {pr['problem']}\n      fix: {pr['fix']}")
    return "\n".join(lines)


def cli_doctor(args: argparse.Namespace) -> int:
    """`edgefuse doctor [--json] [--config C]`."""
    report = collect(args.config)
    print(json.dumps(report, indent=1) if args.json else format_report(report))
    mods = report.get("config", {}).get("modalities", {})
    return 1 if any(not c["ok"] for c in mods.values()) else 0
