"""Server mode against a real `chroma run` on loopback: two machines sharing one memory, failures that
must be clear and lose nothing, purge reaching the server, migrate both ways.

(The core command tests also run against the server: tests/conftest.py, BOTH_STORES.)
"""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from chroma_server import ChromaServer, free_port
from conftest import Result, export_lines

from memcli.api import Memcli
from memcli.errors import ExitCode, MemcliFailure

NOTES = {
    "garden.md": "# Garden\n\nThe apple tree by the shed needs pruning in February.\n\n"
    "## Beds\n\nCarrots and leeks went into the raised bed on the south side.\n",
    "car.md": "# Car\n\nThe winter tyres are stored at the tyre hotel on Mill Road, ticket 4471.\n",
}


def _log_documents(client: Any) -> list[str]:
    """Every record body in every segment of the change log (read with a plain chromadb client)."""
    names = [c.name for c in client.list_collections() if c.name.startswith("memcli.changelog")]
    assert names
    return [d for n in names for d in client.get_collection(n, embedding_function=None).get(include=["documents"])["documents"]]


def test_two_devices_share_one_memory(device: Callable[..., Memcli], tmp_path: Path) -> None:
    a = device("laptop")
    notes = tmp_path / "notes"
    notes.mkdir()
    for name, text in NOTES.items():
        (notes / name).write_text(text)
    a.add("Pickle the beagle saw the vet: ten days of rest on the lead.", tags=["dog"])
    doomed = a.add("The spare key is under the blue flowerpot.").added[0]
    kept = a.add("The boiler service is due in March.").added[0]
    report = a.ingest([notes])
    assert report.chunks_added >= 3
    a.forget([doomed.id])
    a.recall("when is the boiler service", k=1)  # a counter bump, made on the laptop
    a.close()

    b = device("desktop")
    assert {m.text for m in b.list(limit=100).memories} == {m.text for m in device("laptop").list(limit=100).memories}
    assert doomed.id not in {m.id for m in b.list(limit=100).memories}
    assert [m.id for m in b.list(trash=True).memories] == [doomed.id]
    hits = b.recall("where are my winter tyres?", k=3, touch=False).hits
    assert "tyre hotel" in hits[0].memory.text
    assert all(h.memory.id != doomed.id for h in b.recall("spare key under the flowerpot", k=5, touch=False).hits)
    shown = b.show(kept.id)
    assert shown.access_count == 1  # the laptop's recall counted here too
    assert [a for _, a, _ in b._ctx.store.catalog.history(doomed.id)] == ["add", "trash"]
    # The same recall, ranks and scores included, on both machines (the desktop's recall bumped counters).
    a2 = device("laptop")
    q = "raised bed vegetables"
    ra = [(h.memory.id, h.dense_rank, h.keyword_rank) for h in a2.recall(q, k=5, touch=False).hits]
    b2 = device("desktop")
    rb = [(h.memory.id, h.dense_rank, h.keyword_rank) for h in b2.recall(q, k=5, touch=False).hits]
    assert ra == rb and ra
    b2.recall(q, k=2)  # counters bumped on the desktop...
    a3 = device("laptop")
    assert export_lines(a3) == export_lines(b2)  # ...are the laptop's too: one memory


def test_a_write_on_one_machine_reaches_the_other_at_its_next_command(
    device: Callable[..., Memcli], capsys: pytest.CaptureFixture[str]
) -> None:
    a, b = device("a"), device("b")
    a.add("first note from a")
    assert [m.text for m in b.list().memories] == ["first note from a"]
    b.close()
    m = a.add("second note from a").added[0]
    a.forget([m.id], purge=True)
    b = device("b")
    assert [m.text for m in b.list().memories] == ["first note from a"]
    assert any("syncing" in n for n in b.notices)


def test_concurrent_writers_converge(device: Callable[..., Memcli], monkeypatch: pytest.MonkeyPatch) -> None:
    """b writes a change that sorts before one a already applied (its clock is behind): a rebuilds its
    cache from the log and both end with the same store."""
    import time

    a, b = device("a"), device("b")
    a.add("note one")
    b.list()  # b is in sync
    a.add("note two from a")
    real = time.time_ns
    monkeypatch.setattr(time, "time_ns", lambda: real() - 60 * 10**9)  # b's clock is a minute behind
    b.add("note three from b, whose clock is slow")
    monkeypatch.undo()
    b.close()
    a.close()
    a, b = device("a"), device("b")
    assert export_lines(a) == export_lines(b)
    assert len(a.list().memories) == 3
    assert any("rebuilding the local cache" in n for n in a.notices + b.notices)


def test_a_missing_cache_is_rebuilt_and_said(device: Callable[..., Memcli], tmp_path: Path) -> None:
    a = device("a")
    a.add("kept on the server")
    a.close()
    import shutil

    shutil.rmtree(tmp_path / "a" / "data" / "server-cache")
    again = device("a")
    assert [m.text for m in again.list().memories] == ["kept on the server"]
    assert any("rebuilding the local cache from http://127.0.0.1:" in n for n in again.notices)


def test_purge_removes_the_text_from_the_server(
    device: Callable[..., Memcli], chroma_server: ChromaServer, server_db: str, tmp_path: Path
) -> None:
    marker = "zanzibarquokka7731"
    a = device("a")
    a.add("A note about the garden shed roof.")
    m = a.add(f"My secret word is {marker}, never tell anyone").added[0]
    a.recall(marker)
    b = device("b")
    assert b.list().total == 2  # b's cache holds it too
    b.close()
    a.forget([m.id], purge=True)
    a.close()
    import chromadb
    from chromadb.config import Settings

    client = chromadb.HttpClient(
        host="127.0.0.1", port=chroma_server.port, database=server_db, settings=Settings(anonymized_telemetry=False)
    )
    docs = _log_documents(client)
    assert docs and not any(marker in d for d in docs)
    assert m.id not in client.get_collection("memcli-default", embedding_function=None).get(include=[])["ids"]
    b = device("b")  # b syncs the purge: no trace left in its cache either
    assert b.list().total == 1
    b.close()
    data = b"".join(p.read_bytes() for p in (tmp_path / "b").rglob("*") if p.is_file())
    assert marker.encode() not in data
    # A cache rebuilt from the scrubbed log is the same store.
    c = device("c")
    assert [x.text for x in c.list().memories] == ["A note about the garden shed roof."]
    assert [act for _, act, _ in c._ctx.store.catalog.history(m.id)] == ["purge"]


# -- failures ----------------------------------------------------------------------------------------
@pytest.fixture
def run_cli(home: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> Callable[..., Result]:
    from memcli.cli.app import main

    def run(*args: str) -> Result:
        capsys.readouterr()
        code = main(list(args))
        out = capsys.readouterr()
        return Result(code, out.out, out.err)

    return run


def test_server_down_is_a_clear_error_naming_the_url(run_cli: Callable[..., Result]) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    r = run_cli("--store-url", url, "add", "hello")
    assert r.code == ExitCode.NETWORK
    assert url in r.err and "cannot be reached" in r.err and "Traceback" not in r.err
    r = run_cli("--store-url", url, "recall", "hello", "--json")
    assert r.code == ExitCode.NETWORK and url in r.out


def test_a_server_that_never_answers_times_out(run_cli: Callable[..., Result], monkeypatch: pytest.MonkeyPatch) -> None:
    """Accepts the connection, then says nothing: memcli gives up after [store] timeout_s, naming the URL."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(8)
    url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    monkeypatch.setenv("MEMCLI_STORE_TIMEOUT_S", "1")
    try:
        r = run_cli("--store-url", url, "list")
    finally:
        sock.close()
    assert r.code == ExitCode.NETWORK and url in r.err and "did not answer within 1 s" in r.err


class _FakeServer:
    """A loopback HTTP server answering with ``handler(method, path, headers) -> (status, body) or None``
    (None: forward to the real Chroma server, like a reverse proxy)."""

    def __init__(self, handler: Callable[[str, str, Any], tuple[int, Any] | None], upstream: str | None = None) -> None:
        outer = self

        class H(BaseHTTPRequestHandler):
            def _do(self) -> None:
                n = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(n) if n else b""
                answer = handler(self.command, self.path, self.headers)
                if answer is None:
                    assert upstream is not None
                    headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "content-length")}
                    r = httpx.request(self.command, upstream + self.path, content=body, headers=headers, trust_env=False)
                    status, payload = r.status_code, r.content
                else:
                    status, payload = answer[0], json.dumps(answer[1]).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)
                outer.seen.append(dict(self.headers))

            do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _do

            def log_message(self, *a: Any) -> None:
                pass

        self.seen: list[dict[str, str]] = []
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def token_proxy(chroma_server: ChromaServer) -> Iterator[_FakeServer]:
    """Chroma behind a reverse proxy that wants a bearer token (the OSS `chroma run` has no auth of its own)."""

    def check(method: str, path: str, headers: Any) -> tuple[int, Any] | None:
        if headers.get("Authorization") != "Bearer s3cret-Token-99":
            return 401, {"error": "Unauthorized", "message": "bad token"}
        return None

    p = _FakeServer(check, upstream=chroma_server.url)
    yield p
    p.close()


def test_auth_refused_then_accepted_and_never_printed(
    run_cli: Callable[..., Result],
    token_proxy: _FakeServer,
    chroma_server: ChromaServer,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    monkeypatch.setenv("MEMCLI_STORE_TOKEN_HEADER", "authorization")
    monkeypatch.setenv("MEMCLI_STORE_DATABASE", chroma_server.new_database())
    r = run_cli("--store-url", token_proxy.url, "add", "behind the proxy")
    assert r.code == ExitCode.NETWORK and token_proxy.url in r.err and "requires a token" in r.err
    monkeypatch.setenv("MEMCLI_STORE_TOKEN", "wrong-token-123")
    r = run_cli("--store-url", token_proxy.url, "add", "behind the proxy")
    assert r.code == ExitCode.NETWORK and "refused the credentials" in r.err and "wrong-token-123" not in r.out + r.err
    monkeypatch.delenv("MEMCLI_STORE_TOKEN")
    token_file = tmp_path / "token"
    token_file.write_text("s3cret-Token-99\n")
    monkeypatch.setenv("MEMCLI_STORE_TOKEN_FILE", str(token_file))
    r = run_cli("--store-url", token_proxy.url, "add", "behind the proxy")
    assert r.code == 0, r.err
    r = run_cli("--store-url", token_proxy.url, "recall", "proxy")
    assert r.code == 0 and "behind the proxy" in r.out
    r = run_cli("--store-url", token_proxy.url, "config", "show")
    assert "s3cret-Token-99" not in r.out + r.err and str(token_file) in r.out
    assert any(h.get("Authorization") == "Bearer s3cret-Token-99" for h in token_proxy.seen)


@pytest.mark.parametrize(
    ("answers", "needle"),
    [
        ({"/api/v2/heartbeat": (404, {"detail": "Not Found"})}, "does not speak Chroma's v2 API"),
        (
            {"/api/v2/heartbeat": (200, {"nanosecond heartbeat": 1}), "/api/v2/version": (200, "0.5.23")},
            "reports version '0.5.23'",
        ),
    ],
)
def test_version_mismatch_is_named(run_cli: Callable[..., Result], answers: dict[str, tuple[int, Any]], needle: str) -> None:
    fake = _FakeServer(lambda m, path, h: answers.get(path, (500, {"error": "unexpected"})))
    try:
        r = run_cli("--store-url", fake.url, "list")
    finally:
        fake.close()
    assert r.code == ExitCode.NETWORK and fake.url in r.err and needle in r.err


def test_unknown_database_is_named(
    run_cli: Callable[..., Result], chroma_server: ChromaServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MEMCLI_STORE_DATABASE", "no_such_db")
    r = run_cli("--store-url", chroma_server.url, "list")
    assert r.code == ExitCode.NETWORK and "no_such_db" in r.err and "[store] database" in r.err


def test_server_lost_mid_session_accepts_nothing_and_loses_nothing(
    tmp_path: Path, minilm_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The server goes away after the store was opened: the add fails naming the URL, the cache does not
    keep it (nothing half-accepted), and what was stored before is all there when the server is back."""
    for var in [k for k in __import__("os").environ if k.startswith("MEMCLI_")]:
        monkeypatch.delenv(var)
    server = ChromaServer.start(tmp_path / "srv")
    env = {
        **__import__("os").environ,
        "MEMCLI_HOME": str(tmp_path / "home"),
        "MEMCLI_EMBEDDING_MODEL": str(minilm_path),
        "MEMCLI_STORE_URL": server.url,
    }
    try:
        m = Memcli(env=env)
        kept = m.add("stored while the server was up").added[0]
        server.stop()
        with pytest.raises(MemcliFailure) as e:
            m.add("written while the server is down")
        assert e.value.code == ExitCode.NETWORK and server.url in e.value.message
        assert [x.text for x in m.list().memories] == [kept.text]  # the local cache did not take it
        m.close()
        server = ChromaServer.start(tmp_path / "srv", port=server.port)
        again = Memcli(env=env)
        assert [x.id for x in again.list().memories] == [kept.id]
        assert again.recall("stored while up", k=1).hits[0].memory.id == kept.id
        again.close()
    finally:
        server.stop()


# -- migrate -----------------------------------------------------------------------------------------
def test_migrate_to_a_server_and_back_is_lossless(
    home: Path, tmp_path: Path, chroma_server: ChromaServer, monkeypatch: pytest.MonkeyPatch, run_cli: Callable[..., Result]
) -> None:
    notes = tmp_path / "notes"
    notes.mkdir()
    for name, text in NOTES.items():
        (notes / name).write_text(text)
    local = Memcli()
    local.ingest([notes])
    a = local.add("The vet said ten days of rest.", tags=["dog"]).added[0]
    b = local.add("Ten days of rest for the dog.").added[0]
    local._ctx.store.link(a.id, b.id, "related")
    local.forget([b.id])
    local.recall("vet rest", k=2)
    before = export_lines(local)
    local.close()

    monkeypatch.setenv("MEMCLI_STORE_DATABASE", chroma_server.new_database())
    r = run_cli("migrate", "--to", chroma_server.url)
    assert r.code == 0, r.err
    assert "from embedded to " + chroma_server.url in r.out

    def comparable(lines: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [x for x in lines if not (x.get("type") == "audit" and x.get("action") == "import") and x.get("type") != "end"]

    remote = Memcli(settings={("store", "url"): chroma_server.url})
    moved = export_lines(remote)
    remote.close()
    assert comparable(moved) == comparable(before)
    assert sum(1 for x in moved if x.get("action") == "import") == len([x for x in before if x.get("type") == "memory"])

    r = run_cli("migrate", "--to", chroma_server.url)  # the target is not empty now
    assert r.code == ExitCode.STORE and "already holds memories" in r.err

    monkeypatch.setenv("MEMCLI_HOME", str(tmp_path / "home2"))
    r = run_cli("migrate", "--from", chroma_server.url)
    assert r.code == 0, r.err
    back = Memcli()
    assert comparable(export_lines(back)) == comparable(before)
    assert back.recall("winter tyres", k=1).hits[0].memory.text.startswith("The winter tyres")
    back.close()


def test_doctor_and_stats_say_where_the_store_is(device: Callable[..., Memcli], chroma_server: ChromaServer) -> None:
    a = device("a")
    a.add("a note")
    report = a.doctor()
    cache = next(f for f in report.findings if f.check == "server cache")
    assert report.ok and cache.ok and chroma_server.url in cache.detail
    assert a.stats().store.startswith(chroma_server.url)


def test_changes_from_a_newer_memcli_are_refused(device: Callable[..., Memcli], monkeypatch: pytest.MonkeyPatch) -> None:
    import memcli.store.schema as catalog

    a = device("a")
    a.add("written by this memcli")
    monkeypatch.setattr(catalog, "SCHEMA_VERSION", catalog.SCHEMA_VERSION + 1)  # a's memcli is upgraded
    a.add("written by a newer memcli")
    monkeypatch.undo()
    with pytest.raises(MemcliFailure) as e:
        device("b").list()
    assert e.value.code == ExitCode.STORE and "newer memcli" in e.value.message and "Upgrade" in e.value.hint


def test_purge_by_every_route_leaves_no_text_on_the_server_and_caches_agree(
    device: Callable[..., Memcli], chroma_server: ChromaServer, server_db: str, tmp_path: Path
) -> None:
    """The marker reaches the store by every route (an add, a Markdown file, a conversation turn its
    neighbours carry in their keys, a recall); after the purge no log record, embedding or cache holds
    it, and a cache rebuilt from the scrubbed log equals the purging machine's."""
    marker = "quokkazanzibar4417"
    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "plans.md").write_text(f"# Plans\nVisit the aquarium.\n\n# Secret\nThe safe code is {marker} 19.\n")
    (notes / "talk.jsonl").write_text(
        "".join(
            json.dumps({"session": "t1", "speaker": s, "text": t}) + "\n"
            for s, t in [("Ana", "Guess my password"), ("Ben", f"Is it {marker}-b?"), ("Ana", "No, it is longer")]
        )
    )
    a = device("a")
    a.add("Buy oat milk")
    a.add(f"My locker combination is {marker} 7")
    a.ingest([notes])
    a.recall(marker, k=10)
    b = device("b")
    assert marker in "".join(m.text for m in b.list(limit=50).memories)
    b.close()
    doomed = [m for m in a.list(limit=50).memories if marker in m.text]
    assert len(doomed) == 3
    a.forget([doomed[0].id])
    a.forget([m.id for m in doomed], purge=True)
    a.close()

    import chromadb
    from chromadb.config import Settings

    client = chromadb.HttpClient(
        host="127.0.0.1", port=chroma_server.port, database=server_db, settings=Settings(anonymized_telemetry=False)
    )
    docs = _log_documents(client)
    assert docs and not any(marker in d or marker[:10] in d for d in docs)
    emb = client.get_collection("memcli.embeddings.384", embedding_function=None).get(include=[])["ids"]
    assert emb and not {m.id for m in doomed} & set(emb)

    b = device("b")
    left = {m.text for m in b.list(limit=50).memories}
    assert {"Buy oat milk", "Visit the aquarium.", "Ana: Guess my password", "Ana: No, it is longer"} <= left
    assert all(marker not in m.keys for m in b.list(limit=50).memories)
    b.close()
    assert marker.encode() not in b"".join(p.read_bytes() for p in (tmp_path / "b").rglob("*") if p.is_file())
    c, a2 = device("c"), device("a")
    assert export_lines(c) == export_lines(a2)
