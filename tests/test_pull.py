"""Model downloads against a real local HTTP server standing in for the Hugging Face hub."""

from __future__ import annotations

import hashlib
import os
import socket
import stat
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from memcli.errors import ExitCode, MemcliFailure
from memcli.models.catalog import (
    CATALOG,
    ModelSpec,
    get_model,
    is_sha256,
    parse_hf_spec,
    resolve_spec,
)
from memcli.models.pull import hub_url, pull

REPO = "acme/Tiny-GGUF"
FILE = "tiny-q4_k_m.gguf"
CONTENT = bytes(range(256)) * 4096 + b"tail"  # 1 MiB + 4 bytes: more than one read chunk
SHA = hashlib.sha256(CONTENT).hexdigest()
PATH = f"/{REPO}/resolve/main/{FILE}"


@dataclass
class Seen:
    method: str
    path: str
    range: str | None
    authorization: str | None
    host: str


@dataclass
class HubState:
    files: dict[str, bytes] = field(default_factory=lambda: {PATH: CONTENT})
    etag: str | None = SHA  # what the hub announces; None: no ETag
    linked_etag: str | None = None  # X-Linked-Etag, sent on the redirect when redirect_to is set
    drop_after: int | None = None  # send this many body bytes of the next GET, then hang up
    ignore_range: bool = False
    status: int | None = None  # answer every request with this status
    stall: float = 0.0  # sleep before answering
    redirect_to: str | None = None  # answer hub paths with 302 to this base URL + path
    requests: list[Seen] = field(default_factory=list)

    def gets(self) -> list[Seen]:
        return [r for r in self.requests if r.method == "GET"]


class FakeHub(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), HubHandler)
        self.state = HubState()

    def handle_error(self, request: socket.socket | tuple[bytes, socket.socket], client_address: Any) -> None:
        # A client hanging up mid-body (Ctrl-C, timeouts) is expected here, not a server bug.
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


class HubHandler(BaseHTTPRequestHandler):
    server: FakeHub

    def log_message(self, format: str, *args: object) -> None:  # keep pytest output clean
        pass

    def do_HEAD(self) -> None:
        self._answer(body=False)

    def do_GET(self) -> None:
        self._answer(body=True)

    def _answer(self, *, body: bool) -> None:
        st = self.server.state
        st.requests.append(
            Seen(
                self.command,
                self.path,
                self.headers.get("Range"),
                self.headers.get("Authorization"),
                self.headers.get("Host", ""),
            )
        )
        if st.stall:
            time.sleep(st.stall)
        if st.status is not None:
            self._empty(st.status)
            return
        path = self.path
        if st.redirect_to and path.startswith(f"/{REPO}/"):
            self.send_response(302)
            self.send_header("Location", st.redirect_to + "/cdn" + path)
            if st.linked_etag:
                self.send_header("X-Linked-Etag", f'"{st.linked_etag}"')
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        data = st.files.get(path.removeprefix("/cdn"))
        if data is None:
            self._empty(404)
            return
        start = 0
        rng = self.headers.get("Range")
        if rng and not st.ignore_range:
            start = int(rng.removeprefix("bytes=").split("-")[0])
            if start >= len(data):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(data)}")
                if st.etag:
                    self.send_header("ETag", f'"{st.etag}"')
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            self.send_response(200)
        if st.etag and not path.startswith("/cdn"):
            self.send_header("ETag", f'"{st.etag}"')
        if path.startswith("/cdn"):
            self.send_header("ETag", '"' + "ab" * 32 + '"')  # a CDN's 64-hex hash that is no sha256
        self.send_header("Content-Length", str(len(data) - start))
        self.end_headers()
        if not body:
            return
        payload = data[start:]
        if st.drop_after is not None:
            payload, st.drop_after = payload[: st.drop_after], None
            self.wfile.write(payload)
            self.wfile.flush()
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        self.wfile.write(payload)

    def _empty(self, code: int) -> None:
        self.send_response(code)
        self.send_header("Content-Length", "0")
        self.end_headers()


@pytest.fixture
def hub(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeHub]:
    server = FakeHub()
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{server.server_address[1]}")
    monkeypatch.delenv("HF_TOKEN", raising=False)
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture
def models(tmp_path: Path) -> Path:
    return tmp_path / "home" / "models"


SPEC = f"hf:{REPO}/{FILE}"


def pinned(sha256: str | None = SHA) -> ModelSpec:
    return ModelSpec("tiny", "chat", REPO, FILE, sha256=sha256, size_bytes=len(CONTENT))


def test_fresh_download_reports_progress_and_writes_exact_bytes(hub: FakeHub, models: Path) -> None:
    calls: list[tuple[int, int | None]] = []
    result = pull(SPEC, models, progress=lambda done, total: calls.append((done, total)))

    assert result.path == models / FILE
    assert result.path.read_bytes() == CONTENT
    assert (result.sha256, result.size_bytes) == (SHA, len(CONTENT))
    assert result.verified and not result.resumed  # checked against the hub's sha256 ETag
    assert calls[0] == (0, len(CONTENT)) and calls[-1] == (len(CONTENT), len(CONTENT))
    assert len(calls) >= 3  # more than one chunk arrived
    assert not (models / f"{FILE}.part").exists()
    assert stat.S_IMODE(result.path.stat().st_mode) == 0o600
    assert stat.S_IMODE(models.stat().st_mode) == 0o700


def test_interrupted_download_resumes_with_range(hub: FakeHub, models: Path) -> None:
    hub.state.drop_after = 300_000
    with pytest.raises(MemcliFailure) as info:
        pull(SPEC, models)
    assert info.value.code == ExitCode.NETWORK
    part = models / f"{FILE}.part"
    assert part.stat().st_size == 300_000
    assert "resume" in info.value.hint

    result = pull(SPEC, models)

    assert hub.state.gets()[-1].range == "bytes=300000-"
    assert result.resumed and result.verified
    assert result.path.read_bytes() == CONTENT
    assert result.sha256 == SHA
    assert not part.exists()


def test_ctrl_c_keeps_the_part_for_the_next_pull(hub: FakeHub, models: Path) -> None:
    def interrupt(done: int, total: int | None) -> None:
        if done > 0:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        pull(SPEC, models, progress=interrupt)
    kept = (models / f"{FILE}.part").stat().st_size
    assert 0 < kept < len(CONTENT)

    result = pull(SPEC, models)

    assert hub.state.gets()[-1].range == f"bytes={kept}-"
    assert result.resumed and result.path.read_bytes() == CONTENT


def test_server_ignoring_range_restarts_from_zero(hub: FakeHub, models: Path) -> None:
    models.mkdir(parents=True)
    (models / f"{FILE}.part").write_bytes(b"stale bytes from something else")
    hub.state.ignore_range = True

    result = pull(SPEC, models)

    assert hub.state.gets()[-1].range is not None  # we asked to resume...
    assert not result.resumed  # ...the server sent the whole file, so we started over
    assert result.path.read_bytes() == CONTENT


def test_complete_part_answered_416_is_finished_without_body(hub: FakeHub, models: Path) -> None:
    models.mkdir(parents=True)
    (models / f"{FILE}.part").write_bytes(CONTENT)

    result = pull(SPEC, models)

    assert hub.state.gets()[-1].range == f"bytes={len(CONTENT)}-"
    assert result.resumed and result.verified
    assert result.path.read_bytes() == CONTENT


def test_catalog_checksum_mismatch_deletes_download(hub: FakeHub, models: Path) -> None:
    with pytest.raises(MemcliFailure) as info:
        pull(pinned(sha256="0" * 64), models)

    assert info.value.code == ExitCode.MODEL
    assert "0" * 64 in info.value.message and SHA in info.value.message
    assert not (models / FILE).exists()
    assert not (models / f"{FILE}.part").exists()


def test_hub_announced_checksum_mismatch_deletes_download(hub: FakeHub, models: Path) -> None:
    hub.state.etag = hashlib.sha256(b"another file").hexdigest()
    with pytest.raises(MemcliFailure) as info:
        pull(SPEC, models)
    assert info.value.code == ExitCode.MODEL
    assert list(models.iterdir()) == []


def test_without_any_known_checksum_result_is_unverified(hub: FakeHub, models: Path) -> None:
    hub.state.etag = None
    result = pull(SPEC, models)
    assert not result.verified
    assert result.sha256 == SHA


def test_404_names_the_url(hub: FakeHub, models: Path) -> None:
    spec = f"hf:{REPO}/missing.gguf"
    with pytest.raises(MemcliFailure) as info:
        pull(spec, models)
    assert info.value.code == ExitCode.NETWORK
    assert hub_url(parse_hf_spec(spec), os.environ["HF_ENDPOINT"]) in info.value.message
    assert "404" in info.value.message


def test_401_hint_mentions_hf_token_without_leaking_it(hub: FakeHub, models: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    hub.state.status = 401
    with pytest.raises(MemcliFailure) as info:
        pull(SPEC, models)
    assert "HF_TOKEN" in info.value.hint and "401" in info.value.message

    monkeypatch.setenv("HF_TOKEN", "hf_secret_value")
    with pytest.raises(MemcliFailure) as info:
        pull(SPEC, models)
    assert hub.state.requests[-1].authorization == "Bearer hf_secret_value"
    assert "not accepted" in info.value.hint
    assert "hf_secret_value" not in info.value.message + info.value.hint


def test_connection_refused_names_the_url(models: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as s:  # a port that was free a moment ago, with nothing listening
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    endpoint = f"http://127.0.0.1:{port}"
    with pytest.raises(MemcliFailure) as info:
        pull(SPEC, models, endpoint=endpoint)
    assert info.value.code == ExitCode.NETWORK
    assert hub_url(parse_hf_spec(SPEC), endpoint) in info.value.message
    assert "refused" in info.value.message


def test_timeout_is_reported(hub: FakeHub, models: Path) -> None:
    hub.state.stall = 1.0
    with pytest.raises(MemcliFailure) as info:
        pull(SPEC, models, timeout=0.2)
    assert info.value.code == ExitCode.NETWORK
    assert "within 0.2 s" in info.value.message


def test_present_file_with_known_checksum_is_not_fetched_again(hub: FakeHub, models: Path) -> None:
    first = pull(pinned(), models)
    count = len(hub.state.requests)

    again = pull(pinned(), models)

    assert len(hub.state.requests) == count  # not even a HEAD: the catalog knows the checksum
    assert again.path == first.path and again.verified and not again.resumed


def test_present_hf_file_costs_one_head_and_no_get(hub: FakeHub, models: Path) -> None:
    pull(SPEC, models)
    gets = len(hub.state.gets())

    again = pull(SPEC, models)

    assert len(hub.state.gets()) == gets
    assert hub.state.requests[-1].method == "HEAD"
    assert again.verified


def test_damaged_present_file_is_downloaded_again(hub: FakeHub, models: Path) -> None:
    models.mkdir(parents=True)
    (models / FILE).write_bytes(b"not the model")
    result = pull(pinned(), models)
    assert result.path.read_bytes() == CONTENT
    assert len(hub.state.gets()) == 1


def test_redirect_uses_linked_etag_and_drops_token_on_other_host(
    hub: FakeHub, models: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    port = hub.server_address[1]
    hub.state.redirect_to = f"http://localhost:{port}"  # another host name for the same server
    hub.state.linked_etag = SHA
    monkeypatch.setenv("HF_TOKEN", "hf_secret_value")

    result = pull(SPEC, models)

    hub_request, cdn_request = hub.state.requests
    assert hub_request.authorization == "Bearer hf_secret_value"
    assert cdn_request.path.startswith("/cdn/") and cdn_request.authorization is None
    assert result.verified  # by X-Linked-Etag, not by the CDN's unrelated 64-hex ETag
    assert result.path.read_bytes() == CONTENT


def test_redirect_without_linked_etag_ignores_cdn_etag(hub: FakeHub, models: Path) -> None:
    hub.state.redirect_to = f"http://localhost:{hub.server_address[1]}"
    result = pull(SPEC, models)
    assert not result.verified  # the CDN's ETag ("abab...") would have failed the checksum


def test_hf_spec_parsing() -> None:
    spec = parse_hf_spec("hf:Qwen/Qwen2.5-0.5B-Instruct-GGUF/qwen2.5-0.5b-instruct-q4_k_m.gguf")
    assert (spec.repo, spec.filename, spec.revision) == (
        "Qwen/Qwen2.5-0.5B-Instruct-GGUF",
        "qwen2.5-0.5b-instruct-q4_k_m.gguf",
        "main",
    )
    assert spec.sha256 is None and spec.kind == "unknown"

    nested = resolve_spec("hf:owner/repo/sub/dir/model.gguf@abc123")
    assert nested.filename == "sub/dir/model.gguf" and nested.local_name == "model.gguf"
    assert nested.revision == "abc123"
    url = hub_url(nested, "https://hub.example/")
    assert url == "https://hub.example/owner/repo/resolve/abc123/sub/dir/model.gguf"
    pr = hub_url(replace(nested, revision="refs/pr/1"), "https://h")
    assert pr.endswith("/resolve/refs%2Fpr%2F1/sub/dir/model.gguf")

    bad_specs = (
        "hf:owner/model.gguf",
        "hf:owner/repo/model.bin",
        "hf:owner/repo/../x.gguf",
        "hf:o/r/m.gguf@",
        "hf:../r/m.gguf",
        "hf:owner/repo/.gguf",
    )
    for bad in bad_specs:
        with pytest.raises(MemcliFailure) as info:
            parse_hf_spec(bad)
        assert info.value.code == ExitCode.USAGE


def test_unknown_catalog_name_lists_valid_names() -> None:
    with pytest.raises(MemcliFailure) as info:
        get_model("gpt-17")
    assert info.value.code == ExitCode.NOT_FOUND
    for model in CATALOG:
        assert model.name in info.value.message
    assert "hf:" in info.value.hint


def test_catalog_name_downloads_its_pinned_file(hub: FakeHub, models: Path) -> None:
    model = get_model("qwen2.5-0.5b-instruct")
    with pytest.raises(MemcliFailure):  # the fake hub does not have it
        pull(model.name, models)
    assert hub.state.requests[-1].path == (f"/{model.repo}/resolve/{model.revision}/{model.filename}")


def test_catalog_entries_are_well_formed() -> None:
    names = [m.name for m in CATALOG]
    assert len(names) == len(set(names))
    assert {m.kind for m in CATALOG} == {"embedding", "chat"}
    for model in CATALOG:
        assert get_model(model.name) is model
        assert model.filename.endswith(".gguf") and model.repo.count("/") == 1
        assert model.sha256 is None or is_sha256(model.sha256)
        # A known checksum is only meaningful for a pinned commit: branches move.
        assert model.sha256 is None or len(model.revision) == 40


def test_bad_endpoint_is_a_config_error(models: Path) -> None:
    with pytest.raises(MemcliFailure) as info:
        pull(SPEC, models, endpoint="huggingface.co")
    assert info.value.code == ExitCode.CONFIG
