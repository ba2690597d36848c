"""Shared fixtures: every test gets its own MEMCLI_HOME; the real MiniLM is converted once per machine.

The embedder is the real converted all-MiniLM-L6-v2 run by llama.cpp, and the store is a real
SQLite catalog plus a real embedded Chroma in a temp dir. Nothing here is mocked.
"""

from __future__ import annotations

import io
import json
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from chroma_server import ChromaServer

from memcli.api import Memcli

REPO = Path(__file__).resolve().parent.parent
NETGUARD_DIR = Path(__file__).resolve().parent / "netguard"


def pytest_configure(config: pytest.Config) -> None:
    """The network guard (tests/netguard/sitecustomize.py), for this process and every subprocess."""
    import os
    import tempfile

    fd, log = tempfile.mkstemp(prefix="memcli-netguard-", suffix=".log")
    __import__("os").close(fd)
    os.environ["MEMCLI_TEST_NETGUARD"] = "1"
    os.environ["MEMCLI_TEST_NETGUARD_LOG"] = log
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(NETGUARD_DIR), os.environ.get("PYTHONPATH", "")) if p)
    sys.path.insert(0, str(NETGUARD_DIR))
    from sitecustomize import install  # type: ignore[import-not-found]

    install()


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    import os

    log = Path(os.environ.get("MEMCLI_TEST_NETGUARD_LOG", ""))
    attempts = log.read_text(encoding="utf-8") if log.is_file() else ""
    if log.is_file():
        log.unlink()
    if attempts:
        sys.stderr.write("\nnetwork guard: non-loopback network use during the tests:\n" + attempts)
        session.exitstatus = 1


@pytest.fixture(scope="session")
def minilm_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The bundled MiniLM converted to GGUF once per test session (it takes well under a second)."""
    from memcli.models.bundled import ensure_bundled_minilm

    path, _ = ensure_bundled_minilm(tmp_path_factory.mktemp("models"))
    return path


# Test modules whose tests run twice, against the embedded store and against a real Chroma server
# (`chroma run` on loopback): the core commands. A test that inspects embedded-only files is marked
# @pytest.mark.embedded_only (with why).
BOTH_STORES = {"test_memories", "test_cli", "test_ingest", "test_lifecycle", "test_recall_features", "test_transfer"}


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    # MEMCLI_TEST_BOTH_STORES=all runs every test that uses a home against both stores (a longer run).
    every = __import__("os").environ.get("MEMCLI_TEST_BOTH_STORES") == "all"
    module = metafunc.module.__name__.rsplit(".", 1)[-1]
    if (
        "home" in metafunc.fixturenames
        and (module in BOTH_STORES or (every and module != "test_server"))
        and metafunc.definition.get_closest_marker("embedded_only") is None
    ):
        metafunc.parametrize("store_mode", ["embedded", "server"], indirect=True)


@pytest.fixture
def store_mode(request: pytest.FixtureRequest) -> str:
    return str(getattr(request, "param", "embedded"))


@pytest.fixture(scope="session")
def chroma_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ChromaServer]:
    """A real `chroma run` on 127.0.0.1, on a free port, in a temp dir; stopped after the session."""
    server = ChromaServer.start(tmp_path_factory.mktemp("chroma-server"))
    yield server
    server.stop()


@pytest.fixture
def home(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, minilm_path: Path, store_mode: str, request: pytest.FixtureRequest
) -> Path:
    h = tmp_path / "home"
    monkeypatch.setenv("MEMCLI_HOME", str(h))
    monkeypatch.setenv("MEMCLI_EMBEDDING_MODEL", str(minilm_path))
    for var in [
        k for k in __import__("os").environ if k.startswith("MEMCLI_") and k not in ("MEMCLI_HOME", "MEMCLI_EMBEDDING_MODEL")
    ]:
        monkeypatch.delenv(var)
    monkeypatch.delenv("NO_COLOR", raising=False)
    if store_mode == "server":
        server: ChromaServer = request.getfixturevalue("chroma_server")
        monkeypatch.setenv("MEMCLI_STORE_URL", server.url)
        monkeypatch.setenv("MEMCLI_STORE_DATABASE", server.new_database())  # a fresh store per test
    return h


@pytest.fixture
def separate_store(store_mode: str, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Callable[[Path], None]:
    """Point MEMCLI_HOME at another directory holding a *separate* store. On a server that also takes a
    fresh database: two homes on one server database are one shared memory, by design."""

    def switch(path: Path) -> None:
        monkeypatch.setenv("MEMCLI_HOME", str(path))
        if store_mode == "server":
            server: ChromaServer = request.getfixturevalue("chroma_server")
            monkeypatch.setenv("MEMCLI_STORE_DATABASE", server.new_database())

    return switch


@pytest.fixture
def other_store(store_mode: str, request: pytest.FixtureRequest) -> Callable[[Path], Memcli]:
    """A Memcli on a separate store in ``path`` (see separate_store)."""

    def open_(path: Path) -> Memcli:
        if store_mode == "server":
            server: ChromaServer = request.getfixturevalue("chroma_server")
            return Memcli(home=path, settings={("store", "database"): server.new_database()})
        return Memcli(home=path)

    return open_


@pytest.fixture
def mem(home: Path) -> Iterator[Memcli]:
    m = Memcli()
    yield m
    m.close()


@dataclass
class Result:
    code: int
    out: str
    err: str

    def json(self) -> Any:
        return json.loads(self.out)


@pytest.fixture
def cli(home: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> Callable[..., Result]:
    """Run the real CLI entry point in-process (stdout piped, so plain-text output)."""
    from memcli.cli.app import main

    def run(*args: str, stdin: str | None = None, stdin_bytes: bytes | None = None) -> Result:
        capsys.readouterr()
        if stdin is not None:
            stdin_bytes = stdin.encode()
        if stdin_bytes is not None:
            monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(stdin_bytes), encoding="utf-8"))
        code = main(list(args))
        captured = capsys.readouterr()
        return Result(code, captured.out, captured.err)

    return run


# -- server mode: several machines on one server database ----------------------------------------------
@pytest.fixture
def server_db(chroma_server: ChromaServer) -> str:
    return chroma_server.new_database()


@pytest.fixture
def device(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, minilm_path: Path, chroma_server: ChromaServer, server_db: str
) -> Callable[[str], Memcli]:
    """device("a") opens the memory as seen from machine "a": its own MEMCLI_HOME, the shared server."""
    for var in [k for k in __import__("os").environ if k.startswith("MEMCLI_")]:
        monkeypatch.delenv(var)
    opened: list[Memcli] = []

    def open_(name: str, **settings: Any) -> Memcli:
        env = {
            **__import__("os").environ,
            "MEMCLI_HOME": str(tmp_path / name),
            "MEMCLI_EMBEDDING_MODEL": str(minilm_path),
            "MEMCLI_STORE_URL": chroma_server.url,
            "MEMCLI_STORE_DATABASE": server_db,
        }
        m = Memcli(env=env, settings={("store", k): v for k, v in settings.items()})
        opened.append(m)
        return m

    yield open_  # type: ignore[misc]
    for m in opened:
        m.close()


def export_lines(m: Memcli) -> list[dict[str, Any]]:
    """Everything the store knows, as export lines (the header's time left out)."""
    import io

    buf = io.StringIO()
    m.export(buf)
    lines = [json.loads(x) for x in buf.getvalue().splitlines()]
    return [x for x in lines if "exported_at" not in x]


def write(p: Path, text: str | bytes) -> Path:
    """Write a test file (its folders too) and return its path."""
    p.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(text, bytes):
        p.write_bytes(text)
    else:
        p.write_text(text, encoding="utf-8")
    return p
