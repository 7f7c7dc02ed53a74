"""Camera source: OpenCV VideoCapture on a V4L2 device, a video file, an RTSP/HTTP stream or a GStreamer pipeline.

    uri: "0" or "/dev/video0"       V4L2 device (index or path), with capture_size, fourcc (MJPG) and rate_hz as fps
         "clip.mp4"                 video file, paced at its own fps in realtime mode
         "rtsp://cam/1", "http://host:8080/stream.mjpg"   network streams (OpenCV's FFmpeg backend)
         "nvarguscamerasrc ! ... ! appsink"   GStreamer pipeline (needs an OpenCV built with GStreamer: JetPack's)

Frames are stamped right after grab() (the moment the driver hands the frame over) and delivered raw (H, W, 3)
uint8 BGR; the synchronizer prepares them (edgefuse.preprocess.prepare_image). A lost device, a dropped stream or
the end of a non-looping file closes the capture and reopens it with exponential backoff (reconnect_s doubling to
reconnect_max_s), so a camera that vanishes and returns resumes on its own; every failure and reconnect is logged
with its uri, at most every 30 s for a failure that repeats. A video file is paced at its fps in realtime mode and
stamped on the virtual clock (1/fps apart) otherwise. A device or stream that delivers frames faster than 1.2x its
fps (a file served without pacing) is flagged and masked; a slow camera is not (low light halves a webcam's rate).

OpenCV is whichever `cv2` imports: pip's (`edgefuse[opencv]`, no GStreamer) or the system's (JetPack's, with
GStreamer and CUDA); the first open logs which one, and `edgefuse doctor` lists its build facts.
"""

from __future__ import annotations

import logging
import math
import re
import sys
import time
from typing import Any

from edgefuse._optional import MissingDependency, require
from edgefuse.runtime.clock import Sample, monotonic_ns
from edgefuse.runtime.sources import Backoff, Pacing, Source, Throttle
from edgefuse.spec import ModalitySpec, SpecError

log = logging.getLogger(__name__)
_facts: dict[str, Any] | None = None  # the OpenCV in use, read (and logged) once per process


def load_cv2() -> Any:
    """The importable cv2, or MissingDependency naming the `opencv` extra (or a system OpenCV)."""
    return require("cv2", "the camera source (or use a system OpenCV, e.g. JetPack's: see docs/jetson.md)")


def opencv_facts(cv2: Any) -> dict[str, Any]:
    """Version, location and video back-ends of an OpenCV build, read from cv2.getBuildInformation()."""
    info = cv2.getBuildInformation()

    def flag(name: str) -> bool:
        m = re.search(rf"^\s*{re.escape(name)}:\s*(\S+)", info, re.MULTILINE)
        return bool(m) and m.group(1).upper().startswith("YES")

    return {
        "version": cv2.__version__,
        "path": getattr(cv2, "__file__", None),
        "gstreamer": flag("GStreamer"),
        "ffmpeg": flag("FFMPEG"),
        "v4l2": flag("v4l/v4l2"),
        "cuda": flag("NVIDIA CUDA"),
    }


def uri_kind(uri: str) -> str:
    """ "device" (index or /dev/video*), "pipeline" (GStreamer, has "!"), "stream" (has "://") or "file"."""
    if uri.isdigit() or uri.startswith("/dev/video"):
        return "device"
    if "!" in uri:
        return "pipeline"
    return "stream" if "://" in uri else "file"


def capture_args(uri: str) -> tuple[Any, int]:
    """VideoCapture arguments for a uri: device index or path (V4L2 on Linux), GStreamer pipeline, or file/URL."""
    import cv2

    kind = uri_kind(uri)
    if kind == "device":
        api = cv2.CAP_V4L2 if sys.platform.startswith("linux") and uri.startswith("/dev/") else cv2.CAP_ANY
        return (int(uri) if uri.isdigit() else uri), api
    if kind == "pipeline":
        return uri, cv2.CAP_GSTREAMER
    return uri, cv2.CAP_ANY


class CameraSource(Source):
    """Frames from one OpenCV capture; reconnects instead of raising."""

    def __init__(
        self, source_id: str, modality: str, spec: ModalitySpec, realtime: bool = True, seed: int = 0, context=None
    ):
        super().__init__(source_id, modality, spec, realtime)
        if not spec.source.uri:
            raise SpecError(
                "<spec>", [(f"modalities.{modality}.source.uri", "camera needs a device, file, URL or pipeline")]
            )
        self.uri = spec.source.uri
        self.uri_kind = uri_kind(self.uri)
        self.is_file = self.uri_kind == "file"
        # devices and network streams always run on the host clock; only files can run on a virtual one
        self.realtime = realtime or not self.is_file
        self.counters.update(disconnects=0, loops=0, open_failures=0, unpaced=0)
        self.backoff = Backoff(spec.source.reconnect_s, spec.source.reconnect_max_s)
        self.throttle = Throttle(log)
        self.cap: Any = None
        self.fps = spec.rate_hz
        self.pacing: Pacing | None = None  # devices and streams: flag one that runs faster than its fps
        self._last_ratio: float | None = None  # the pace that got it flagged
        self._connected_once = False
        self._frame_i = 0  # frames since (re)connect: paces files
        self._t_start_ns = 0
        self._vclock_ns = monotonic_ns()  # virtual clock (files, not realtime)

    def open(self) -> None:
        self._connect()

    def close(self) -> None:
        if self.cap is not None:
            self.cap.release()
            self.cap = None

    def now_ns(self) -> int:
        return monotonic_ns() if self.realtime else self._vclock_ns

    def device(self) -> str:
        return self.uri

    def stats(self) -> dict[str, Any]:
        ratio = self.pacing.ratio if self.pacing is not None and self.pacing.ratio is not None else self._last_ratio
        ratio = None if ratio is None else round(ratio, 3)
        return {**self.counters, "connected": self.cap is not None, "fps": self.fps, "pace_ratio": ratio,
                "problem": self.problem}  # fmt: skip

    def read(self, timeout_s: float) -> list[Sample]:
        if self.cap is None:
            if not self.backoff.due():
                self.backoff.wait(timeout_s if self.realtime else 0.0)
                if not self.backoff.due():
                    return []
            if not self._connect():
                return []
        if not self.realtime:
            return self._read_virtual(timeout_s)
        if self.is_file:  # pace a file at its fps
            due_ns = self._t_start_ns + round(self._frame_i * 1e9 / self.fps)
            wait_s = (due_ns - monotonic_ns()) / 1e9
            if wait_s > timeout_s:
                time.sleep(max(0.0, timeout_s))
                return []
            time.sleep(max(0.0, wait_s))
        s = self._grab()
        if s is None or self.pacing is None:
            return [] if s is None else [s]
        if not self.pacing.update(self._frame_i, s.t_capture_ns):
            if self.problem is None:
                self._last_ratio = self.pacing.ratio
                self.counters["unpaced"] += 1
                self.problem = f"delivers {self.pacing.ratio:.3g}x its {self.fps:g} fps (the stream is not paced)"
                log.warning("camera %r: %s; masked until it slows down", self.uri, self.problem)
            self.counters["drops"] += 1
            return []
        if self.problem is not None and self.problem.startswith("delivers"):
            log.warning("camera %r: back at its frame rate (%.3gx)", self.uri, self.pacing.ratio)
            self.problem = None
        return [s]

    # internals ------------------------------------------------------------------------------------------------------
    def _read_virtual(self, timeout_s: float) -> list[Sample]:
        """Frames 1/fps apart on the virtual clock, as many as fit in the next timeout_s."""
        end_ns = self._vclock_ns + round(timeout_s * 1e9)
        out: list[Sample] = []
        while self.cap is not None:
            t_ns = self._t_start_ns + round(self._frame_i * 1e9 / self.fps)
            if t_ns > end_ns:
                break
            s = self._grab(t_ns)
            if s is not None:
                out.append(s)
        self._vclock_ns = end_ns
        return out

    def _grab(self, t_virtual_ns: int | None = None) -> Sample | None:
        ok = self.cap.grab()
        t_ns = monotonic_ns() if t_virtual_ns is None else t_virtual_ns
        if not ok:
            self._end_of_stream()
            return None
        ok, frame = self.cap.retrieve()
        self._frame_i += 1
        if not ok or frame is None:
            self.counters["errors"] += 1
            return None
        return self._sample(t_ns, t_ns if t_virtual_ns is not None else monotonic_ns(), frame)

    def _end_of_stream(self) -> None:
        if self.is_file and self.spec.source.loop:
            self.cap.set(self._cv2.CAP_PROP_POS_FRAMES, 0)
            self.counters["loops"] += 1
            self._restart_clock()
            return
        self.throttle.warning("camera %r: stream ended or device lost; reconnecting", self.uri)
        self.counters["disconnects"] += 1
        self.close()
        self.backoff.failed()

    def _connect(self) -> bool:
        try:
            cv2 = self._cv2 = load_cv2()
        except MissingDependency as err:  # no OpenCV at all: mask the camera, name the fix
            self._failed(str(err), permanent=True)
            return False
        facts = _announce(cv2)
        if self.uri_kind == "pipeline" and not facts["gstreamer"]:
            self._failed(
                f"this OpenCV ({facts['path']}) is built without GStreamer, so pipelines cannot open; use one with "
                "GStreamer (JetPack's: docs/jetson.md) and uninstall pip's opencv-python-headless",
                permanent=True,
            )
            return False
        cap = cv2.VideoCapture(*capture_args(self.uri))
        if cap.isOpened() and self.uri_kind == "device":
            self._configure(cap)
        if not cap.isOpened():
            cap.release()
            why = "no such file" if self.is_file and not _exists(self.uri) else "cannot open"
            self._failed(why)
            return False
        fps = cap.get(cv2.CAP_PROP_FPS)
        self.fps = fps if math.isfinite(fps) and 0 < fps <= 1000 else self.spec.rate_hz
        self.cap = cap
        self.backoff.succeeded()
        if self._connected_once:
            self.counters["reconnects"] += 1
            log.warning("camera %r: reconnected", self.uri)
        else:
            w, h = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
            log.info("camera %r: opened %dx%d at %g fps (%s backend)", self.uri, w, h, self.fps, cap.getBackendName())
        self._connected_once = True
        if self.problem is not None and not self.problem.startswith("delivers"):  # an unpaced one stays on hold
            self.problem = None
        if self.uri_kind in ("device", "stream", "pipeline"):  # a stream's reported fps may be a default: the larger
            unpaced = self.problem is not None and self.problem.startswith("delivers")
            self.pacing = Pacing(max(self.fps, self.spec.rate_hz), check_slow=False, hold=unpaced)
            self.pacing.update(0, monotonic_ns())
        self._restart_clock()
        return True

    def _configure(self, cap: Any) -> None:
        """Ask a V4L2 device for the configured FOURCC, size and fps (FOURCC first: it decides the sizes on offer)."""
        cv2, src = self._cv2, self.spec.source
        if src.fourcc:
            cap.set(cv2.CAP_PROP_FOURCC, cv2.VideoWriter_fourcc(*src.fourcc))
        if src.capture_size:
            cap.set(cv2.CAP_PROP_FRAME_WIDTH, src.capture_size[0])
            cap.set(cv2.CAP_PROP_FRAME_HEIGHT, src.capture_size[1])
        cap.set(cv2.CAP_PROP_FPS, self.spec.rate_hz)

    def _failed(self, why: str, permanent: bool = False) -> None:
        self.counters["open_failures"] += 1
        if permanent:  # retrying cannot help: retry rarely
            self.backoff.delay_s = self.backoff.max_s
        self.backoff.failed()
        if not self._connected_once:
            self.unavailable(why)
        self.throttle.warning("camera %r: %s; retrying", self.uri, why)

    def _restart_clock(self) -> None:
        """Frame 0 of a (re)opened or rewound file is due now (realtime) or one period after the last frame."""
        if self.realtime:
            self._t_start_ns = monotonic_ns()
        else:
            last = self._t_start_ns + round((self._frame_i - 1) * 1e9 / self.fps) if self._frame_i else None
            self._t_start_ns = self._vclock_ns if last is None else last + round(1e9 / self.fps)
        self._frame_i = 0


def _exists(path: str) -> bool:
    from pathlib import Path

    return Path(path).exists()


def _announce(cv2: Any) -> dict[str, Any]:
    """OpenCV build facts; logs once per process which cv2 the runtime uses."""
    global _facts
    if _facts is None:
        facts = _facts = opencv_facts(cv2)
        log.info(
            "camera: OpenCV %s from %s (GStreamer %s, FFmpeg %s, V4L2 %s)",
            facts["version"], facts["path"], *("yes" if facts[k] else "no" for k in ("gstreamer", "ffmpeg", "v4l2")),
        )  # fmt: skip
    return _facts
