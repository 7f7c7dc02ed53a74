"""Fixtures every test folder shares."""

from __future__ import annotations

import socket
from collections.abc import Callable

import pytest


@pytest.fixture
def free_endpoint() -> Callable[[], str]:
    """A function giving a loopback TCP endpoint on a port free right now: no clash with a running edgefuse."""

    def make() -> str:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            return f"tcp://127.0.0.1:{s.getsockname()[1]}"

    return make
