"""A paced virtual microphone for tests: a private PulseAudio daemon with a pipe source that offers only 48 kHz stereo
int16, fed from a FIFO at real-time pace, reached by PortAudio through ALSA's pulse plugin (libasound2-plugins).

    with VirtualMic(tmp_path) as mic:        # skips the test (with the reason) where PulseAudio cannot run
        env = {**os.environ, **mic.env}      # HOME with an .asoundrc naming the ALSA device "mic48"
        subprocess.run([sys.executable, "-c", CODE], env=env)

Tone: left 440 Hz at 8000/32768, right 1000 Hz at 4000/32768.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import threading
import time
from pathlib import Path

import numpy as np
import pytest

RATE, CHANNELS = 48000, 2
LEFT_HZ, LEFT_AMP, RIGHT_HZ, RIGHT_AMP = 440.0, 8000, 1000.0, 4000


def tone(start: int, n: int) -> np.ndarray:
    """(n, 2) int16 frames start..start+n of the test tone."""
    t = np.arange(start, start + n) / RATE
    left = LEFT_AMP * np.sin(2 * np.pi * LEFT_HZ * t)
    right = RIGHT_AMP * np.sin(2 * np.pi * RIGHT_HZ * t)
    return np.stack([left, right], 1).astype(np.int16)


class VirtualMic:
    def __init__(self, tmp: Path):
        self.dir = Path(tmp) / "pulse"
        self.fifo = self.dir / "mic.fifo"
        self.socket = self.dir / "native"
        self.env = {"HOME": str(self.dir), "PULSE_RUNTIME_PATH": str(self.dir), "PULSE_SERVER": f"unix:{self.socket}"}
        self._proc: subprocess.Popen | None = None
        self._stop = threading.Event()
        self._feeder: threading.Thread | None = None

    def __enter__(self) -> VirtualMic:
        exe = shutil.which("pulseaudio")
        if exe is None:
            pytest.skip("pulseaudio is not installed (scripts/install-system-deps.sh installs it)")
        if not Path("/usr/lib/x86_64-linux-gnu/alsa-lib/libasound_module_pcm_pulse.so").exists() and not list(
            Path("/usr/lib").glob("*/alsa-lib/libasound_module_pcm_pulse.so")
        ):
            pytest.skip("ALSA's pulse plugin is not installed (libasound2-plugins)")
        self.dir.mkdir(parents=True)
        server = f"unix:{self.socket}"
        (self.dir / "default.pa").write_text(
            f"load-module module-native-protocol-unix auth-anonymous=1 socket={self.socket}\n"
            f"load-module module-pipe-source source_name=mic48 file={self.fifo} format=s16le rate={RATE} "
            f"channels={CHANNELS}\nset-default-source mic48\n"
        )
        (self.dir / ".asoundrc").write_text(
            f'pcm.mic48 {{ type pulse; server "{server}"; device "mic48" }}\n'
            f'pcm.!default {{ type pulse; server "{server}"; device "mic48" }}\n'
            f'ctl.!default {{ type pulse; server "{server}" }}\n'
        )
        args = [exe, "-n", "-F", str(self.dir / "default.pa"), "--daemonize=no", "--exit-idle-time=-1"]
        args += ["--disallow-exit", "--use-pid-file=no", "--disable-shm"]
        self._proc = subprocess.Popen(
            args, env={**os.environ, **self.env}, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        deadline = time.monotonic() + 10
        while not (self.socket.exists() and self.fifo.exists()):
            if self._proc.poll() is not None or time.monotonic() > deadline:
                err = self._proc.stderr.read().decode(errors="replace") if self._proc.poll() is not None else ""
                self.__exit__()
                pytest.skip(f"PulseAudio did not start here: {err.strip().splitlines()[-1:] or 'timeout'}")
            time.sleep(0.05)
        self._feeder = threading.Thread(target=self._feed, daemon=True)
        self._feeder.start()
        return self

    def _feed(self) -> None:
        """Write the tone into the pipe at real-time pace, 10 ms at a time."""
        fd = os.open(self.fifo, os.O_WRONLY)
        try:
            t0, n, blk = time.monotonic(), 0, RATE // 100
            while not self._stop.is_set():
                os.write(fd, tone(n, blk).tobytes())
                n += blk
                time.sleep(max(0.0, t0 + n / RATE - time.monotonic()))
        except OSError:
            pass  # the daemon went away
        finally:
            os.close(fd)

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._proc is not None and self._proc.poll() is None:
            self._proc.send_signal(signal.SIGTERM)
            try:
                self._proc.wait(5)
            except subprocess.TimeoutExpired:
                self._proc.kill()
        if self._feeder is not None:
            self._feeder.join(2)
