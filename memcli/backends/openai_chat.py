"""A chat model behind an OpenAI-compatible HTTP server (llama.cpp's server, ``python -m llama_cpp.server``,
Ollama, vLLM), for running the LLM on another machine.

Why it looks the way it does:

- Every failure (refused connection, timeout, wrong URL, refused key, malformed reply) becomes one
  :class:`MemcliFailure` with exit code NETWORK that names the URL and what to check. Connecting gives up
  after a few seconds, so a wrong address never looks like a hang.
- Structured output is asked for as ``response_format={"type": "json_object", "schema": ...}``: the form
  llama.cpp's server and llama_cpp.server turn into a grammar (llama_cpp.server ignores
  ``{"type": "json_schema"}``). Other servers may only promise *some* JSON: callers validate anyway.
- The API key is sent in a header and never appears in a message (it is scrubbed from server replies too).
"""

from __future__ import annotations

import json
import math
import threading
from collections.abc import Generator, Iterator, Sequence
from typing import TYPE_CHECKING, Any, NoReturn

from memcli.backends.base import ChatMessage
from memcli.errors import ExitCode, MemcliFailure

if TYPE_CHECKING:
    import httpx

CONNECT_TIMEOUT_S = 3.0
_ERROR_BODY_CHARS = 300  # enough for a server's error message, not for a whole echoed prompt
_TOKEN_CACHE_SIZE = 4096
_NOT_OPENAI_HINT = "Is this an OpenAI-compatible server? [chat] base_url should point at its /v1 API."


class OpenAIChat:
    """A ``ChatModel`` served over HTTP. ``base_url`` is the server root or its ``/v1`` URL."""

    def __init__(
        self,
        base_url: str,
        model: str,
        *,
        api_key: str | None = None,
        n_ctx: int = 4096,
        timeout: float = 120.0,
    ) -> None:
        """``timeout`` bounds the wait for each piece of a reply (a CPU server can be slow to start one)."""
        import httpx

        root = base_url.rstrip("/")
        self.api_base = root if root.endswith("/v1") else root + "/v1"
        self.root = self.api_base.removesuffix("/v1")
        self.model = model
        self.model_id = f"server:{model}"
        self.n_ctx = n_ctx
        self.n_params: int | None = None  # a server does not say
        self.last_finish: str | None = None
        self._api_key = api_key
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._client = httpx.Client(timeout=httpx.Timeout(timeout, connect=CONNECT_TIMEOUT_S), headers=headers)
        self._server_tokenizer: bool | None = None  # unknown until the first count_tokens
        self._token_counts: dict[str, int] = {}
        self._lock = threading.Lock()  # guards the token-count cache; httpx.Client itself is thread-safe

    # -- ChatModel --------------------------------------------------------------------------------

    def count_tokens(self, text: str) -> int:
        with self._lock:
            cached = self._token_counts.get(text)
        if cached is not None:
            return cached
        n = self._server_count(text) if self._server_tokenizer is not False else None
        if n is None:
            n = estimate_tokens(text)
        with self._lock:
            if len(self._token_counts) >= _TOKEN_CACHE_SIZE:
                self._token_counts.clear()
            self._token_counts[text] = n
        return n

    def stream(
        self,
        messages: Sequence[ChatMessage],
        *,
        max_tokens: int,
        temperature: float = 0.7,
        top_p: float = 1.0,
        repeat_penalty: float = 1.0,
    ) -> Generator[str, None, None]:
        """Yield the reply as text pieces. Closing the iterator early closes the connection, which
        makes llama.cpp-based servers stop generating. ``repeat_penalty`` is not part of the OpenAI API
        and is not sent (a strict server would refuse the request)."""
        body = self._body(messages, max_tokens=max_tokens, temperature=temperature)
        body["top_p"] = top_p
        return self._deltas(body)

    def complete_json(
        self,
        messages: Sequence[ChatMessage],
        schema: dict[str, Any],
        *,
        max_tokens: int,
        cancel: threading.Event | None = None,
    ) -> str:
        """The server's schema-constrained reply as text (the caller validates it). When ``cancel`` is set
        the request is dropped at the next piece and what arrived so far is returned."""
        if cancel is not None and cancel.is_set():
            return ""
        body = self._body(messages, max_tokens=max_tokens, temperature=0.0)
        body["response_format"] = {"type": "json_object", "schema": schema}
        parts: list[str] = []
        pieces = self._deltas(body)
        try:
            for piece in pieces:
                parts.append(piece)
                if cancel is not None and cancel.is_set():
                    break
        finally:
            pieces.close()
        return strict_json_text("".join(parts))

    def close(self) -> None:
        self._client.close()

    # -- HTTP -------------------------------------------------------------------------------------

    def _body(self, messages: Sequence[ChatMessage], *, max_tokens: int, temperature: float) -> dict[str, Any]:
        return {
            "model": self.model,
            "messages": [{"role": m.role, "content": m.content} for m in messages],
            "max_tokens": max_tokens,
            "temperature": temperature,
            "stream": True,
        }

    def _deltas(self, body: dict[str, Any]) -> Generator[str, None, None]:
        import httpx

        url = f"{self.api_base}/chat/completions"
        self.last_finish = None
        try:
            with self._client.stream("POST", url, json=body) as response:
                if response.status_code != 200:
                    response.read()
                    self._fail_status(url, response)
                events = 0
                for data in _sse_data(response.iter_lines()):
                    if data == "[DONE]":
                        return
                    events += 1
                    text = self._delta_text(url, data)
                    if text:
                        yield text
                if events == 0:  # a 200 that is not an event stream (a web page, another API)
                    self._fail(f"malformed reply from {self._show(url)}: no server-sent events", _NOT_OPENAI_HINT)
        except httpx.HTTPError as e:
            self._fail_transport(url, e)

    def _delta_text(self, url: str, data: str) -> str | None:
        try:
            chunk = json.loads(data)
            if "error" in chunk:
                self._fail(f"the chat server at {self._show(url)} reported an error: {self._scrub(str(chunk['error']))}", "")
            choice = chunk["choices"][0]
            delta = choice.get("delta") or {}
            content = delta.get("content")
            if choice.get("finish_reason"):
                self.last_finish = str(choice["finish_reason"])
        except (ValueError, KeyError, IndexError, TypeError, AttributeError):
            self._fail(f"malformed reply from {self._show(url)}: {self._scrub(data[:_ERROR_BODY_CHARS])!r}", _NOT_OPENAI_HINT)
        return content if isinstance(content, str) else None

    def _server_count(self, text: str) -> int | None:
        """Ask llama_cpp.server's tokenizer (other servers lack this route: we then stop asking)."""
        import httpx

        try:
            r = self._client.post(f"{self.root}/extras/tokenize", json={"model": self.model, "input": text})
            tokens = r.json()["tokens"] if r.status_code == 200 else None
        except (httpx.HTTPError, ValueError, KeyError, TypeError):
            tokens = None
        self._server_tokenizer = isinstance(tokens, list)
        return len(tokens) if isinstance(tokens, list) else None

    # -- failures ---------------------------------------------------------------------------------

    def _fail_status(self, url: str, response: httpx.Response) -> NoReturn:
        code, where = response.status_code, self._show(url)
        if code in (401, 403):
            self._fail(
                f"the chat server at {where} refused the API key (HTTP {code})",
                "Check [chat] api_key (or its environment variable).",
            )
        if code == 404:
            self._fail(
                f"nothing at {where} (HTTP 404)",
                f"Check [chat] base_url (e.g. http://127.0.0.1:8080/v1) and that the server serves model {self.model!r}.",
            )
        detail = self._scrub(response.text[:_ERROR_BODY_CHARS])
        self._fail(
            f"the chat server at {where} answered HTTP {code}: {detail}", "See the server's log; check [chat] model and n_ctx."
        )

    def _fail_transport(self, url: str, e: Exception) -> NoReturn:
        import httpx

        where = self._show(url)
        if isinstance(e, httpx.ConnectTimeout | httpx.ConnectError):
            self._fail(f"cannot connect to the chat server at {where}", "Is the server running, and is [chat] base_url right?")
        if isinstance(e, httpx.TimeoutException):
            self._fail(
                f"the chat server at {where} stopped answering (timed out)",
                "Is it overloaded? Raise [chat] timeout if it is just slow.",
            )
        self._fail(f"talking to the chat server at {where} failed: {type(e).__name__}", "Check [chat] base_url and the network.")

    def _fail(self, message: str, hint: str) -> NoReturn:
        raise MemcliFailure(self._scrub(message), hint=hint, code=ExitCode.NETWORK)

    def _scrub(self, text: str) -> str:
        return text.replace(self._api_key, "***") if self._api_key else text

    def _show(self, url: str) -> str:
        import httpx

        return str(httpx.URL(url).copy_with(username=None, password=None, query=None))


def _sse_data(lines: Iterator[str]) -> Iterator[str]:
    """The ``data:`` payloads of a server-sent event stream (comments and other fields skipped)."""
    for line in lines:
        if line.startswith("data:"):
            yield line[5:].strip()


def estimate_tokens(text: str) -> int:
    """A deliberately high token count for when the server cannot tokenise: one token per 3 UTF-8 bytes
    (English BPE averages ~4 characters a token; CJK is ~1 token per 3-byte character)."""
    return math.ceil(len(text.encode("utf-8")) / 3) + 1


def strict_json_text(text: str) -> str:
    """``text`` unchanged, unless it is JSON only with raw control characters in strings (which
    llama_cpp.server's grammar allows and ``json.loads`` refuses): then the same value, re-serialised."""
    try:
        json.loads(text)
        return text
    except ValueError:
        pass
    try:
        value = json.loads(text, strict=False)
    except ValueError:
        return text  # not JSON at all (e.g. cut short): the caller's validation reports it
    return json.dumps(value, ensure_ascii=False)


__all__ = ["CONNECT_TIMEOUT_S", "OpenAIChat", "estimate_tokens", "strict_json_text"]
