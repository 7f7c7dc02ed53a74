"""Camera source: OpenCV VideoCapture on a device index, a video file, an RTSP URL or a GStreamer pipeline.

Frames are stamped right after grab() (the moment the driver hands the frame over) and delivered raw (H, W, 3)
uint8 BGR; the synchronizer prepares them (edgefuse.preprocess.prepare_image). A lost device, a dropped stream or
the end of a non-looping file closes the capture and reopens it with exponential backoff (reconnect_s doubling to
reconnect_max_s), so a camera that vanishes and returns resumes on its own. A video file is paced at its fps in
realtime mode and stamped on the virtual clock (1/fps apart) otherwise.
"""

from __future__ import annotations

import logging
import math
import time
from typing import Any

import cv2

from edgefuse.runtime.clock import Sample, monotonic_ns
from edgefuse.runtime.sources import Backoff, Source
from edgefuse.spec import ModalitySpec, SpecError

log = logging.getLogger(__name__)


def capture_args(uri: str) -> tuple[Any, int]:
    """VideoCapture arguments for a uri: device index, GStreamer pipeline ("!" in it), or file/URL."""
    if uri.isdigit():
        return int(uri), cv2.CAP_ANY
    if "!" in uri:
        return uri, cv2.CAP_GSTREAMER
    return uri, cv2.CAP_ANY


class CameraSource(Source):
    """Frames from one OpenCV capture; reconnects instead of raising."""

    def __init__(
        self, source_id: str, modality: str, spec: ModalitySpec, realtime: bool = True, seed: int = 0, context=None
    ):
        super().__init__(source_id, modality, spec, realtime)
        if not spec.source.uri:
            raise SpecError("<spec>", [(f"modalities.{modality}.source.uri", "camera needs a device index or path")])
        self.uri = spec.source.uri
        self.is_file = not (self.uri.isdigit() or "://" in self.uri or "!" in self.uri)
        # devices and network streams always run on the host clock; only files can run on a virtual one
        self.realtime = realtime or not self.is_file
        self.counters.update(disconnects=0, loops=0, open_failures=0)
        self.backoff = Backoff(spec.source.reconnect_s, spec.source.reconnect_max_s)
        self.cap: cv2.VideoCapture | None = None
        self.fps = spec.rate_hz
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

    def stats(self) -> dict[str, Any]:
        return {**self.counters, "connected": self.cap is not None, "fps": self.fps}

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
        return [] if s is None else [s]

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
        ok = self.cap.grab()  # type: ignore[union-attr]
        t_ns = monotonic_ns() if t_virtual_ns is None else t_virtual_ns
        if not ok:
            self._end_of_stream()
            return None
        ok, frame = self.cap.retrieve()  # type: ignore[union-attr]
        self._frame_i += 1
        if not ok or frame is None:
            self.counters["errors"] += 1
            return None
        return self._sample(t_ns, t_ns if t_virtual_ns is not None else monotonic_ns(), frame)

    def _end_of_stream(self) -> None:
        if self.is_file and self.spec.source.loop:
            self.cap.set(cv2.CAP_PROP_POS_FRAMES, 0)  # type: ignore[union-attr]
            self.counters["loops"] += 1
            self._restart_clock()
            return
        log.warning("camera %s: stream ended or device lost; reconnecting", self.uri)
        self.counters["disconnects"] += 1
        self.close()
        self.backoff.failed()

    def _connect(self) -> bool:
        cap = cv2.VideoCapture(*capture_args(self.uri))
        if not cap.isOpened():
            cap.release()
            self.counters["open_failures"] += 1
            self.backoff.failed()
            return False
        fps = cap.get(cv2.CAP_PROP_FPS)
        self.fps = fps if math.isfinite(fps) and 0 < fps <= 1000 else self.spec.rate_hz
        self.cap = cap
        self.backoff.succeeded()
        if self._connected_once:
            self.counters["reconnects"] += 1
        self._connected_once = True
        self._restart_clock()
        return True

    def _restart_clock(self) -> None:
        """Frame 0 of a (re)opened or rewound file is due now (realtime) or one period after the last frame."""
        if self.realtime:
            self._t_start_ns = monotonic_ns()
        else:
            last = self._t_start_ns + round((self._frame_i - 1) * 1e9 / self.fps) if self._frame_i else None
            self._t_start_ns = self._vclock_ns if last is None else last + round(1e9 / self.fps)
        self._frame_i = 0
