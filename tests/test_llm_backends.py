"""The real chat backends: llama.cpp in-process (LlamaChat) and over HTTP (OpenAIChat against the real
llama_cpp.server), both running a tiny random-weight GGUF. Its replies are noise, so the tests check what
does not depend on weights: streaming, stopping, templates, grammar-valid JSON, the KV cache, failures.
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import gguf
import jsonschema
import llm_fixtures
import pytest
from llama_cpp import llama_chat_format
from llm_fixtures import SERVER_MODEL, KeyedServer

from memcli.backends.base import ChatMessage
from memcli.backends.llama_chat import LlamaChat
from memcli.backends.openai_chat import OpenAIChat, estimate_tokens, strict_json_text
from memcli.errors import ExitCode, MemcliFailure
from memcli.models.synthetic import vocab, write_gguf

# The shared fixtures (pytest collects them from this module's attributes; conftest may import them too).
tiny_gguf = llm_fixtures.tiny_gguf
llama_server = llm_fixtures.llama_server
llama_server_with_key = llm_fixtures.llama_server_with_key

FACTS_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "facts": {
            "type": "array",
            "minItems": 1,  # so the model must write strings, not just "[]"
            "maxItems": 3,
            "items": {
                "type": "object",
                "properties": {"text": {"type": "string", "maxLength": 40}},
                "required": ["text"],
            },
        }
    },
    "required": ["facts"],
}
HELLO = [ChatMessage("system", "You are a helpful assistant."), ChatMessage("user", "Hello there, my name is Noor.")]


@pytest.fixture(scope="module")
def chat(tiny_gguf: Path) -> Iterator[LlamaChat]:
    model = LlamaChat(tiny_gguf, n_ctx=1024, n_threads=1, seed=0)
    yield model
    model.close()


def _facts_prompt(i: int) -> list[ChatMessage]:
    return [
        ChatMessage("system", "Extract facts as JSON."),
        ChatMessage("user", f"I moved to Lisbon in {2000 + i} and I like tea."),
    ]


# -- the synthetic model ------------------------------------------------------------------------------


def test_tiny_gguf_is_small_deterministic_and_well_formed(tiny_gguf: Path, tmp_path: Path) -> None:
    assert tiny_gguf.stat().st_size < 1_000_000
    assert write_gguf(tmp_path / "again.gguf", seed=0).read_bytes() == tiny_gguf.read_bytes()
    assert write_gguf(tmp_path / "other.gguf", seed=1).read_bytes() != tiny_gguf.read_bytes()
    fields = gguf.GGUFReader(tiny_gguf).fields
    tokens = fields["tokenizer.ggml.tokens"].contents()
    assert tokens[fields["tokenizer.ggml.eos_token_id"].contents()] == "<|im_end|>"  # so generation stops at a turn's end
    assert "<|im_start|>" in fields["tokenizer.chat_template"].contents()


@pytest.mark.parametrize("size", [512, 151936])
def test_vocab_has_unique_tokens_and_right_types(size: int) -> None:
    tokens, scores, types = vocab(size)
    assert len(tokens) == len(set(tokens)) == len(scores) == len(types) == size
    assert tokens[:3] == ["<unk>", "<s>", "</s>"]
    assert all(types[tokens.index(f"<0x{b:02X}>")] == gguf.TokenType.BYTE for b in (0, 0x0A, 0x7B, 0xFF))
    assert types[tokens.index("<|im_end|>")] == gguf.TokenType.CONTROL
    assert types[-1] == gguf.TokenType.NORMAL


def test_qwen2_q8_0_variant_loads_and_generates(tmp_path: Path) -> None:
    path = write_gguf(tmp_path / "q.gguf", arch="qwen2", weight_type="q8_0", tie_embeddings=True, seed=3)
    model = LlamaChat(path, n_ctx=256, n_threads=1)
    try:
        assert "".join(model.stream(HELLO, max_tokens=4, temperature=1.0))
    finally:
        model.close()


def test_chat_models_load_without_extra_weight_buffers_and_the_library_is_left_as_it_was() -> None:
    """AMX/repacked weight buffers crashed Q8_0 generation on AMX Xeons: memcli loads without them,
    and only while it loads (the embedder and anything else see llama.cpp's own defaults)."""
    import llama_cpp.llama_cpp as lib

    from memcli.backends.llama_chat import plain_weight_buffers

    original = lib.llama_model_default_params
    assert original().use_extra_bufts  # llama.cpp's default, which the test below must change
    with plain_weight_buffers():
        assert lib.llama_model_default_params().use_extra_bufts is False
    assert lib.llama_model_default_params is original
    with contextlib.suppress(RuntimeError), plain_weight_buffers():
        raise RuntimeError("a failed load")
    assert lib.llama_model_default_params is original


def test_unknown_preset_or_field_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="preset"):
        write_gguf(tmp_path / "x.gguf", "huge")
    with pytest.raises(ValueError, match="n_layer"):
        write_gguf(tmp_path / "x.gguf", n_layer=3)


# -- LlamaChat -----------------------------------------------------------------------------------------


def test_stream_yields_text_pieces(chat: LlamaChat) -> None:
    pieces = list(chat.stream(HELLO, max_tokens=12, temperature=1.0))
    assert len(pieces) > 1
    assert all(isinstance(p, str) and p for p in pieces)


def test_closing_a_stream_stops_generation_and_frees_the_model(chat: LlamaChat) -> None:
    stream = chat.stream(HELLO, max_tokens=500, temperature=1.0)
    assert next(stream)
    stream.close()
    assert chat.llm.n_tokens < chat.last_prompt_tokens + 10  # it did not go on to 500 tokens
    assert list(chat.stream(HELLO, max_tokens=5, temperature=1.0))
    assert json.loads(chat.complete_json(_facts_prompt(0), FACTS_SCHEMA, max_tokens=300))


def test_an_open_stream_blocks_a_second_request_from_its_own_thread(chat: LlamaChat) -> None:
    stream = chat.stream(HELLO, max_tokens=100, temperature=1.0)
    next(stream)
    try:
        with pytest.raises(RuntimeError, match="open stream"):
            chat.complete_json(HELLO, FACTS_SCHEMA, max_tokens=10)
    finally:
        stream.close()


@pytest.mark.parametrize("temperature", [0.0, 1.0])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_complete_json_is_valid_for_the_schema(tiny_gguf: Path, seed: int, temperature: float) -> None:
    model = LlamaChat(tiny_gguf, n_ctx=1024, n_threads=1, seed=seed, json_temperature=temperature)
    try:
        for i in range(2):
            text = model.complete_json(_facts_prompt(seed * 10 + i), FACTS_SCHEMA, max_tokens=400)
            jsonschema.validate(json.loads(text), FACTS_SCHEMA)  # strict json.loads: no raw control characters
    finally:
        model.close()


class _SetAfter(threading.Event):
    """An event that reads as set from its ``n``-th check on: cancels mid-generation, deterministically."""

    def __init__(self, n: int) -> None:
        super().__init__()
        self.checks, self.n = 0, n

    def is_set(self) -> bool:
        self.checks += 1
        return self.checks >= self.n


def test_complete_json_stops_when_cancelled(chat: LlamaChat) -> None:
    full = chat.complete_json(_facts_prompt(7), FACTS_SCHEMA, max_tokens=400)
    cut = chat.complete_json(_facts_prompt(7), FACTS_SCHEMA, max_tokens=400, cancel=_SetAfter(4))
    assert cut and full.startswith(cut)
    assert len(cut) < len(full)
    already = threading.Event()
    already.set()
    assert chat.complete_json(_facts_prompt(7), FACTS_SCHEMA, max_tokens=400, cancel=already) == ""


def test_two_threads_share_one_model_safely(chat: LlamaChat) -> None:
    results: list[str] = []

    def work(i: int) -> None:
        results.append(chat.complete_json(_facts_prompt(i), FACTS_SCHEMA, max_tokens=400))

    threads = [threading.Thread(target=work, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert len(results) == 2
    for text in results:
        jsonschema.validate(json.loads(text), FACTS_SCHEMA)


def test_an_unconvertible_schema_fails_loudly(chat: LlamaChat) -> None:
    with pytest.raises(MemcliFailure) as e:
        chat.complete_json(HELLO, {"type": "no-such-type"}, max_tokens=10)
    assert e.value.code == ExitCode.MODEL


def test_the_gguf_chat_template_is_applied(chat: LlamaChat) -> None:
    list(chat.stream([ChatMessage("user", "hi")], max_tokens=1))
    chatml = b"<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"
    expected = chat.llm.tokenize(chatml, add_bos=False, special=True)
    assert chat.last_prompt_tokens == len(expected)
    assert len(chat.llm.tokenize(b"<|im_start|>", add_bos=False, special=True)) == 1  # a control token, not text


def test_a_chat_format_override_replaces_the_template(tiny_gguf: Path) -> None:
    model = LlamaChat(tiny_gguf, n_ctx=256, n_threads=1, chat_format="llama-2")
    try:
        list(model.stream([ChatMessage("user", "hi")], max_tokens=1))
        llama2 = llama_chat_format.format_llama2(messages=[{"role": "user", "content": "hi"}]).prompt
        assert "[INST]" in llama2
        assert model.last_prompt_tokens == len(model.llm.tokenize(llama2.encode(), add_bos=True, special=True))
    finally:
        model.close()


def test_kv_cache_reuses_the_shared_prefix(chat: LlamaChat) -> None:
    list(chat.stream(HELLO, max_tokens=4))
    first = chat.last_prompt_tokens
    followup = [*HELLO, ChatMessage("assistant", "Hi Noor!"), ChatMessage("user", "What is my name?")]
    list(chat.stream(followup, max_tokens=4))
    assert chat.last_prompt_tokens > first
    assert chat.last_cached_tokens >= first - 1  # everything up to the assistant header was cached
    list(chat.stream([ChatMessage("system", "Another system prompt entirely."), HELLO[1]], max_tokens=4))
    assert chat.last_cached_tokens < first // 2


def test_count_tokens_uses_the_model_tokenizer(chat: LlamaChat) -> None:
    assert chat.count_tokens("") == 0
    assert chat.count_tokens("I like coffee") == 3  # "▁I", "▁like", "▁coffee" are in the tiny vocab
    assert chat.count_tokens("zqxj zqxj") > chat.count_tokens("I like coffee")


def test_missing_model_fails_with_model_code(tmp_path: Path) -> None:
    with pytest.raises(MemcliFailure) as e:
        LlamaChat(tmp_path / "nope.gguf")
    assert e.value.code == ExitCode.MODEL
    assert "not found" in e.value.message and e.value.hint


def test_non_gguf_file_fails_with_model_code(tmp_path: Path) -> None:
    path = tmp_path / "model.gguf"
    path.write_text("<html>not a model</html>")
    with pytest.raises(MemcliFailure) as e:
        LlamaChat(path)
    assert e.value.code == ExitCode.MODEL
    assert "not a GGUF" in e.value.message


def test_truncated_gguf_fails_with_model_code(tiny_gguf: Path, tmp_path: Path) -> None:
    path = tmp_path / "truncated.gguf"
    path.write_bytes(tiny_gguf.read_bytes()[: tiny_gguf.stat().st_size // 2])
    with pytest.raises(MemcliFailure) as e:
        LlamaChat(path, n_threads=1)
    assert e.value.code == ExitCode.MODEL
    assert e.value.hint


def test_a_model_without_chat_template_needs_a_chat_format(tmp_path: Path) -> None:
    path = write_gguf(tmp_path / "bare.gguf", chat_template=None)
    with pytest.raises(MemcliFailure) as e:
        LlamaChat(path, n_threads=1)
    assert e.value.code == ExitCode.MODEL and "chat template" in e.value.message
    model = LlamaChat(path, n_threads=1, chat_format="chatml")
    model.close()


def test_an_unknown_chat_format_is_refused(tiny_gguf: Path) -> None:
    with pytest.raises(MemcliFailure) as e:
        LlamaChat(tiny_gguf, n_threads=1, chat_format="no-such-format")
    assert e.value.code == ExitCode.MODEL


# -- OpenAIChat against the real llama_cpp.server -------------------------------------------------------


@pytest.fixture
def remote(llama_server: str) -> Iterator[OpenAIChat]:
    client = OpenAIChat(llama_server, SERVER_MODEL, n_ctx=1024, timeout=60)
    yield client
    client.close()


def test_server_stream_yields_text_pieces(remote: OpenAIChat) -> None:
    pieces = list(remote.stream(HELLO, max_tokens=10, temperature=1.0))
    assert len(pieces) > 1 and all(isinstance(p, str) and p for p in pieces)


def test_server_stream_closed_early_then_next_call_works(remote: OpenAIChat) -> None:
    # Few tokens: llama_cpp.server notices a dropped stream late and holds the model until it does.
    stream = remote.stream(HELLO, max_tokens=40, temperature=1.0)
    assert next(stream)
    stream.close()
    assert list(remote.stream(HELLO, max_tokens=4, temperature=1.0))


@pytest.mark.parametrize("i", range(3))
def test_server_complete_json_is_valid_for_the_schema(remote: OpenAIChat, i: int) -> None:
    text = remote.complete_json(_facts_prompt(i), FACTS_SCHEMA, max_tokens=400)
    jsonschema.validate(json.loads(text), FACTS_SCHEMA)


def test_server_count_tokens_uses_the_server_tokenizer(remote: OpenAIChat, chat: LlamaChat) -> None:
    text = "I like coffee and my friend likes tea"
    assert remote.count_tokens(text) == chat.count_tokens(text)


def test_base_url_may_include_v1(llama_server: str) -> None:
    client = OpenAIChat(llama_server + "/v1/", SERVER_MODEL, timeout=60)
    try:
        assert list(client.stream(HELLO, max_tokens=3, temperature=1.0))
    finally:
        client.close()


def _network_failure(client: OpenAIChat) -> MemcliFailure:
    start = time.monotonic()
    with pytest.raises(MemcliFailure) as e:
        list(client.stream(HELLO, max_tokens=3))
    assert time.monotonic() - start < 5  # fails fast, never hangs
    assert e.value.code == ExitCode.NETWORK and e.value.hint
    return e.value


def test_refused_port_fails_fast_with_network_code() -> None:
    failure = _network_failure(OpenAIChat(f"http://127.0.0.1:{_closed_port()}", "m"))
    assert "127.0.0.1" in failure.message and "connect" in failure.message


def test_wrong_url_fails_with_network_code(llama_server: str) -> None:
    failure = _network_failure(OpenAIChat(llama_server + "/wrong/path", SERVER_MODEL))
    assert "404" in failure.message and "/wrong/path" in failure.message


def test_wrong_api_key_is_refused_without_revealing_it(llama_server_with_key: KeyedServer) -> None:
    secret = "wrong-secret-0123456789"
    failure = _network_failure(OpenAIChat(llama_server_with_key.url, SERVER_MODEL, api_key=secret))
    assert "API key" in failure.message
    assert secret not in failure.message + failure.hint
    good = OpenAIChat(llama_server_with_key.url, SERVER_MODEL, api_key=llama_server_with_key.api_key, timeout=60)
    try:
        assert list(good.stream(HELLO, max_tokens=3, temperature=1.0))
        assert good.count_tokens("I like coffee") == 3
    finally:
        good.close()


def test_silent_server_times_out_with_network_code() -> None:
    with socket.socket() as listener:  # accepts connections (the kernel does) but never answers
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        failure = _network_failure(OpenAIChat(f"http://127.0.0.1:{listener.getsockname()[1]}", "m", timeout=1))
    assert "timed out" in failure.message


def test_not_an_openai_server_fails_as_malformed_and_counts_by_estimate() -> None:
    with _web_page_server() as url:
        client = OpenAIChat(url, "m")
        assert "malformed" in _network_failure(client).message
        text = "some words to count"
        assert client.count_tokens(text) == estimate_tokens(text) >= len(text.split())


def test_strict_json_text_escapes_raw_control_characters() -> None:
    assert strict_json_text('{"a": "x"}') == '{"a": "x"}'
    assert json.loads(strict_json_text('{"a": "x\ty\x0b"}')) == {"a": "x\ty\x0b"}
    assert strict_json_text('{"a": "cut sh') == '{"a": "cut sh'


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class _WebPage(BaseHTTPRequestHandler):
    def _page(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        body = b"<html><body>It works!</body></html>"
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = _page

    def log_message(self, format: str, *args: Any) -> None:
        pass


@contextlib.contextmanager
def _web_page_server() -> Iterator[str]:
    """A web server that answers every request with a 200 HTML page: reachable, but not an LLM API."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _WebPage)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
