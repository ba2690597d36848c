"""Fail any non-loopback network connection, in the test process and in every memcli it starts.

Loaded by pytest (conftest imports ``install``) and, through PYTHONPATH, by each Python subprocess
the tests start (``python -m memcli``, the chat and Chroma servers). memcli must not touch the network
at run time except for an explicit model download, which the tests serve from 127.0.0.1. A blocked
attempt raises in the caller and is appended to $MEMCLI_TEST_NETGUARD_LOG, which the test session
checks at the end, so even an attempt that some library swallowed fails the run.
"""

from __future__ import annotations

import ipaddress
import os
import socket
from typing import Any

_LOOPBACK_NAMES = {"localhost", "localhost.localdomain", "ip6-localhost", ""}


def _is_loopback(host: Any) -> bool:
    if isinstance(host, bytes):
        host = host.decode("ascii", "replace")
    if not isinstance(host, str):
        return False
    host = host.strip("[]").split("%")[0].lower()
    if host in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback or ipaddress.ip_address(host).is_unspecified
    except ValueError:
        return False


def _record(what: str) -> None:
    log = os.environ.get("MEMCLI_TEST_NETGUARD_LOG")
    if log:
        with open(log, "a", encoding="utf-8") as f:
            f.write(f"pid {os.getpid()}: {what}\n")


class NetworkBlocked(OSError):
    pass


def install() -> None:
    if getattr(socket, "_memcli_guarded", False):
        return
    real_connect, real_connect_ex, real_getaddrinfo = socket.socket.connect, socket.socket.connect_ex, socket.getaddrinfo

    def check(sock: socket.socket, address: Any) -> None:
        if sock.family in (socket.AF_INET, socket.AF_INET6) and not _is_loopback(address[0]):
            _record(f"connect to {address!r}")
            raise NetworkBlocked(f"test network guard: connection to {address!r} blocked (only loopback is allowed)")

    def connect(self: socket.socket, address: Any) -> None:
        check(self, address)
        real_connect(self, address)

    def connect_ex(self: socket.socket, address: Any) -> int:
        check(self, address)
        return real_connect_ex(self, address)

    def getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
        if host is not None and not _is_loopback(host):
            _record(f"name lookup of {host!r}")
            raise socket.gaierror(socket.EAI_NONAME, f"test network guard: lookup of {host!r} blocked")
        return real_getaddrinfo(host, *args, **kwargs)

    socket.socket.connect = connect  # type: ignore[method-assign]
    socket.socket.connect_ex = connect_ex  # type: ignore[method-assign]
    socket.getaddrinfo = getaddrinfo
    socket._memcli_guarded = True  # type: ignore[attr-defined]


if os.environ.get("MEMCLI_TEST_NETGUARD") == "1":
    install()
