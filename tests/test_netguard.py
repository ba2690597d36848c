"""The suite-wide network guard works: a non-loopback connection fails, in this process and in a child."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest


def _drain_log() -> str:
    log = Path(os.environ["MEMCLI_TEST_NETGUARD_LOG"])
    text = log.read_text(encoding="utf-8")
    log.write_text("", encoding="utf-8")  # these attempts were made on purpose
    return text


def test_non_loopback_connect_is_blocked_here() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s, pytest.raises(OSError, match="network guard"):
        s.connect(("192.0.2.1", 80))  # TEST-NET-1: never routable
    with pytest.raises(OSError, match="network guard"):
        socket.getaddrinfo("example.com", 443)
    assert "192.0.2.1" in _drain_log()


def test_loopback_is_allowed() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as server:
        server.bind(("127.0.0.1", 0))
        server.listen(1)
        with socket.create_connection(server.getsockname(), timeout=2):
            pass


def test_subprocesses_are_guarded_too() -> None:
    code = "import socket; socket.create_connection(('192.0.2.1', 80), timeout=1)"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode != 0 and "network guard" in r.stderr
    assert "192.0.2.1" in _drain_log()
