"""Fixtures for the real LLM path: a tiny random-weight chat GGUF and the real llama_cpp.server on loopback.

Import the fixtures into a test module (``from llm_fixtures import tiny_gguf, llama_server``) or list this
module in ``pytest_plugins``. Nothing is mocked: llama.cpp runs the generated model, one thread each,
so the tests stay fast on two busy cores.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from memcli.api import Memcli
from memcli.models.synthetic import write_gguf
from memcli.records import Kind, Memory

SERVER_MODEL = "tiny"  # the server's model alias
SERVER_START_TIMEOUT_S = 60.0  # a cold import of fastapi + llama_cpp on a loaded 2-core machine


@dataclass(frozen=True)
class KeyedServer:
    url: str
    api_key: str


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def running_llama_server(model: Path, workdir: Path, *, api_key: str | None = None) -> Iterator[str]:
    """Start ``python -m llama_cpp.server`` for ``model`` on a free loopback port; yield its base URL."""
    port = free_port()
    cmd = [sys.executable, "-m", "llama_cpp.server", "--model", str(model), "--model_alias", SERVER_MODEL]
    cmd += ["--host", "127.0.0.1", "--port", str(port), "--n_ctx", "1024", "--n_threads", "1", "--n_threads_batch", "1"]
    if api_key is not None:
        cmd += ["--api_key", api_key]
    log = workdir / f"llama-server-{port}.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(cmd, cwd=workdir, stdout=out, stderr=subprocess.STDOUT, env=os.environ.copy())
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_until_serving(proc, url, log, api_key)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _wait_until_serving(proc: subprocess.Popen[bytes], url: str, log: Path, api_key: str | None) -> None:
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    deadline = time.monotonic() + SERVER_START_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"llama_cpp.server exited with {proc.returncode}:\n{log.read_text(errors='replace')[-3000:]}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{url}/v1/models", headers=headers, timeout=1.0).status_code == 200:
                return
        time.sleep(0.1)
    raise RuntimeError(
        f"llama_cpp.server did not answer within {SERVER_START_TIMEOUT_S} s:\n{log.read_text(errors='replace')[-3000:]}"
    )


@pytest.fixture(scope="session")
def tiny_gguf(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A ~0.3 MB random-weight llama chat model with a ChatML template (see memcli.models.synthetic)."""
    return write_gguf(tmp_path_factory.mktemp("llm") / "tiny.gguf", "tiny", seed=0)


@pytest.fixture(scope="session")
def llama_server(tiny_gguf: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Base URL of a real llama_cpp.server serving ``tiny_gguf`` as model ``tiny`` (no API key)."""
    with running_llama_server(tiny_gguf, tmp_path_factory.mktemp("llama-server")) as url:
        yield url


@pytest.fixture(scope="session")
def llama_server_with_key(tiny_gguf: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[KeyedServer]:
    """Like ``llama_server``, but the server demands an API key."""
    key = "test-key-d41d8cd98f00b204"
    with running_llama_server(tiny_gguf, tmp_path_factory.mktemp("llama-server-key"), api_key=key) as url:
        yield KeyedServer(url, key)


__all__ = [
    "SERVER_MODEL",
    "KeyedServer",
    "free_port",
    "llama_server",
    "llama_server_with_key",
    "running_llama_server",
    "tiny_gguf",
]


def replies_to(message: str) -> list[Memory]:
    """The stored assistant turn(s) that follow the user turn ``message`` in the current MEMCLI_HOME
    (a chat run in another process stored them)."""
    mem = Memcli()
    episodes = mem.list(kinds=[Kind.EPISODE], limit=1000).memories
    mem.close()
    asked = next(m for m in episodes if m.text == f"user: {message}")
    return [m for m in episodes if m.source == asked.source and m.position == (asked.position or 0) + 1]
