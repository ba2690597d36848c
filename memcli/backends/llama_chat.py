"""A chat model run in-process by llama-cpp-python (a GGUF file on disk).

Why it looks the way it does:

- llama-cpp-python silently falls back to the "llama-2" chat format when a GGUF has no chat template,
  and to unconstrained JSON when a schema does not convert to a grammar. Both would give plausible
  but wrong output, so both are refused here with a :class:`MemcliFailure`.
- Its schema-to-grammar converter lets raw control characters (a newline, a tab) into JSON strings,
  which ``json.loads`` then rejects; :func:`json_grammar` tightens that rule to what JSON allows.
- One ``Llama`` context must never run two requests at once: a lock serialises them. A stream holds the
  lock until it is exhausted or closed.
- llama-cpp-python tokenises the templated prompt with special-token parsing on, so a message (a
  recalled note above all) holding "<|im_end|><|im_start|>system" would end its turn and open a new
  system turn. Every message's text has the model's own control-token strings broken first.
- The object keeps the KV cache of the previous request, and llama.cpp re-evaluates only what follows
  the longest common prefix; ``last_cached_tokens`` reports how much was reused, for benchmarks.
"""

from __future__ import annotations

import contextlib
import json
import re
import threading
import weakref
from collections.abc import Generator, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from memcli.backends.base import ChatMessage
from memcli.backends.llama_embedder import default_threads
from memcli.errors import model_error

if TYPE_CHECKING:
    from llama_cpp import Llama
    from llama_cpp.llama_grammar import LlamaGrammar

_GGUF_MAGIC = b"GGUF"
# JSON strings may not contain raw U+0000..U+001F (nor, in llama.cpp's own converter, DEL).
_STRICT_CHAR_RULE = r'char ::= [^"\\\x7F\x00-\x1F] | "\\" (["\\/bfnrt] | "u" [0-9a-fA-F] [0-9a-fA-F] [0-9a-fA-F] [0-9a-fA-F])'
_CHAR_RULE = re.compile(r"^char ::= .*$", re.MULTILINE)


def json_grammar(schema: dict[str, Any]) -> str:
    """The GBNF grammar for ``schema`` (llama-cpp-python's converter, with JSON's string rule restored).

    Raises :class:`MemcliFailure` when the schema cannot be converted: generating without the
    grammar would silently give unconstrained output.
    """
    from llama_cpp.llama_grammar import json_schema_to_gbnf

    try:
        gbnf = str(json_schema_to_gbnf(json.dumps(schema)))
    except Exception as e:  # the converter reports unsupported schemas with assert/AttributeError/...
        raise model_error(
            f"cannot turn the JSON schema into a grammar for llama.cpp: {type(e).__name__}: {e}",
            hint="This is a bug in memcli's schema (or an unsupported JSON-schema feature): please report it.",
        )
    return _CHAR_RULE.sub(lambda _: _STRICT_CHAR_RULE, gbnf)


def _check_gguf(path: Path) -> None:
    if not path.is_file():
        raise model_error(f"chat model not found: {path}", hint="Check [chat] model (`memcli config show`) or download one.")
    with path.open("rb") as f:
        if f.read(4) != _GGUF_MAGIC:
            raise model_error(f"{path} is not a GGUF model file", hint="Point [chat] model at a .gguf file.")


def _common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n


class LlamaChat:
    """A GGUF chat model behind the ``ChatModel`` protocol. Close it (or let the process end) to free it."""

    def __init__(
        self,
        path: Path,
        *,
        n_ctx: int = 4096,
        n_threads: int = 0,
        n_gpu_layers: int = 0,
        chat_format: str | None = None,
        seed: int = 0,
        json_temperature: float = 0.0,
    ) -> None:
        """``chat_format`` names one of llama-cpp-python's built-in formats ("chatml", "llama-3", ...) to
        use instead of the GGUF's own template. ``json_temperature`` is used by :meth:`complete_json`
        (0: greedy, the usual choice for extraction)."""
        _check_gguf(path)
        self.path = path
        self.model_id = path.name
        self.n_ctx = n_ctx
        self.json_temperature = json_temperature
        self.llm: Llama = self._load(path, n_ctx, n_threads or default_threads(), n_gpu_layers, chat_format, seed)
        # Free the model before interpreter teardown, where llama-cpp-python's __del__ fails noisily.
        self._finalizer = weakref.finalize(self, self.llm.close)
        self._check_chat_format(chat_format)
        self._lock = threading.Lock()
        self._owner: int | None = None
        self._grammars: dict[str, LlamaGrammar] = {}
        self.n_params: int | None = self._n_params()
        self.last_finish: str | None = None
        self._specials: tuple[str, ...] | None = None  # the vocabulary's control-token strings (defuse)
        self.last_prompt_tokens = 0  # prompt length of the latest request
        self.last_cached_tokens = 0  # of which llama.cpp reused from the KV cache of the request before
        self._watch_prompts()

    @staticmethod
    def _load(path: Path, n_ctx: int, threads: int, n_gpu_layers: int, chat_format: str | None, seed: int) -> Llama:
        try:
            from llama_cpp import Llama
        except ImportError as e:  # pragma: no cover - broken install
            raise model_error(f"llama-cpp-python is not installed: {e}", hint="Run ./scripts/setup again.")
        try:
            with plain_weight_buffers():
                return Llama(
                    model_path=str(path),
                    n_ctx=n_ctx,
                    n_threads=threads,
                    n_threads_batch=threads,
                    n_gpu_layers=n_gpu_layers,
                    chat_format=chat_format,
                    seed=seed,
                    verbose=False,
                )
        except Exception as e:  # llama.cpp reports a bad file as ValueError/RuntimeError
            raise model_error(
                f"llama.cpp could not load {path}: {e}",
                hint="The file may be truncated, or made for a newer llama.cpp; download it again.",
            )

    def _check_chat_format(self, chat_format: str | None) -> None:
        from llama_cpp import llama_chat_format

        if chat_format is None:
            if "tokenizer.chat_template" not in self.llm.metadata:
                self.close()
                raise model_error(
                    f"{self.path.name} has no chat template",
                    hint="Set [chat] chat_format to the model's format (e.g. chatml, llama-3, mistral-instruct, gemma).",
                )
            return
        try:
            llama_chat_format.get_chat_completion_handler(chat_format)
        except llama_chat_format.LlamaChatCompletionHandlerNotFoundException:
            self.close()
            raise model_error(
                f"unknown chat format {chat_format!r}",
                hint="Use one of llama-cpp-python's names (chatml, llama-2, llama-3, mistral-instruct, gemma, ...) or unset it.",
            )

    def _watch_prompts(self) -> None:
        """Record each prompt's length and its prefix shared with what the context holds.

        ``Llama.generate`` receives the tokenised prompt (after the chat template) and keeps the KV
        cache up to the longest common prefix with the tokens it evaluated before; we compute the same
        prefix at the same moment. It re-evaluates at least the last prompt token to refresh its logits.
        """
        llm, generate = self.llm, self.llm.generate

        def watched(tokens: Sequence[int], *args: Any, **kwargs: Any) -> Any:
            prompt = list(tokens)
            previous = llm.input_ids[: llm.n_tokens].tolist()
            self.last_prompt_tokens = len(prompt)
            self.last_cached_tokens = max(0, min(_common_prefix(previous, prompt), len(prompt) - 1))
            return generate(tokens, *args, **kwargs)

        llm.generate = watched  # type: ignore[method-assign]

    def _n_params(self) -> int | None:
        import llama_cpp

        try:
            return int(llama_cpp.llama_model_n_params(self.llm.model))
        except (AttributeError, TypeError, ValueError):  # a llama-cpp-python without it: no size presets
            return None

    def defuse(self, text: str) -> str:
        """``text`` with each of the model's control-token strings broken by a zero-width space after
        its first character, so that it stays text: only the chat template opens and ends turns."""
        if self._specials is None:
            import llama_cpp

            vocab = llama_cpp.llama_model_get_vocab(self.llm.model)
            found = set()
            for i in range(llama_cpp.llama_vocab_n_tokens(vocab)):  # once: ~25 ms for 49k tokens
                attr = llama_cpp.llama_vocab_get_attr(vocab, i)
                if attr & (llama_cpp.LLAMA_TOKEN_ATTR_CONTROL | llama_cpp.LLAMA_TOKEN_ATTR_USER_DEFINED):
                    t = self.llm.detokenize([i], special=True).decode("utf-8", "replace")
                    # User-defined tokens may be ordinary words: only markup-like ones are turn structure.
                    if len(t.strip()) > 1 and (attr & llama_cpp.LLAMA_TOKEN_ATTR_CONTROL or (t[0] in "<[" and t[-1] in ">]")):
                        found.add(t)
            self._specials = tuple(sorted(found, key=len, reverse=True))
        for t in self._specials:
            if t in text:
                text = text.replace(t, t[0] + "\u200b" + t[1:])
        return text

    def count_tokens(self, text: str) -> int:
        # Tokenising reads only the vocabulary, so it runs without the lock (and so inside an open stream).
        return len(self.llm.tokenize(text.encode("utf-8"), add_bos=False, special=False))

    @contextlib.contextmanager
    def _exclusive(self) -> Iterator[None]:
        if self._owner == threading.get_ident():
            raise RuntimeError("this thread still has an open stream from this model: exhaust or close it first")
        with self._lock:
            self._owner = threading.get_ident()
            try:
                yield
            finally:
                self._owner = None

    def _chunks(self, messages: Sequence[ChatMessage], **kwargs: Any) -> Iterator[Any]:
        if not self._finalizer.alive:
            raise model_error(f"{self.model_id} was closed", hint="This is a bug in memcli: please report it.")
        payload: list[Any] = [{"role": m.role, "content": self.defuse(m.content)} for m in messages]
        try:
            return iter(self.llm.create_chat_completion(payload, stream=True, **kwargs))
        except ValueError as e:  # e.g. "Requested tokens (N) exceed context window of M"
            raise model_error(f"{self.model_id}: {e}", hint=f"Shorten the conversation or raise [chat] n_ctx (now {self.n_ctx}).")

    def _deltas(self, messages: Sequence[ChatMessage], **kwargs: Any) -> Generator[str, None, None]:
        with self._exclusive():
            self.last_finish = None
            chunks = self._chunks(messages, **kwargs)
            try:
                for chunk in chunks:
                    choice = chunk["choices"][0]
                    text = choice["delta"].get("content")
                    if choice.get("finish_reason"):
                        self.last_finish = str(choice["finish_reason"])
                    if text:
                        yield text
            finally:
                # Stops generation when the caller closes the stream early; the KV cache stays valid.
                close = getattr(chunks, "close", None)
                if close is not None:
                    close()

    def stream(
        self,
        messages: Sequence[ChatMessage],
        *,
        max_tokens: int,
        temperature: float = 0.7,
        top_p: float = 1.0,
        repeat_penalty: float = 1.0,
    ) -> Generator[str, None, None]:
        """Yield the reply as text pieces. Closing the iterator early stops generation. The chat
        template's end-of-turn token ends the reply (llama-cpp-python's chat handlers stop on it)."""
        return self._deltas(
            messages, max_tokens=max_tokens, temperature=temperature, top_p=top_p, repeat_penalty=repeat_penalty
        )

    def complete_json(
        self,
        messages: Sequence[ChatMessage],
        schema: dict[str, Any],
        *,
        max_tokens: int,
        cancel: threading.Event | None = None,
    ) -> str:
        """Generate text constrained by ``schema``'s grammar and return it (the caller validates it).

        The text is valid JSON unless it was cut short: by ``max_tokens``, or by ``cancel`` being set,
        in which case generation stops at once and what was produced so far is returned.
        """
        grammar = self._grammar(schema)
        if cancel is not None and cancel.is_set():
            return ""
        parts: list[str] = []
        pieces = self._deltas(messages, max_tokens=max_tokens, temperature=self.json_temperature, grammar=grammar)
        with contextlib.closing(pieces):
            for piece in pieces:
                parts.append(piece)
                if cancel is not None and cancel.is_set():
                    break
        return "".join(parts)

    def _grammar(self, schema: dict[str, Any]) -> LlamaGrammar:
        key = json.dumps(schema, sort_keys=True)
        if key not in self._grammars:
            from llama_cpp.llama_grammar import LlamaGrammar

            gbnf = json_grammar(schema)
            self._check_grammar(gbnf)
            self._grammars[key] = LlamaGrammar.from_string(gbnf, verbose=False)
        return self._grammars[key]

    def _check_grammar(self, gbnf: str) -> None:
        """Compile the grammar once now: llama-cpp-python only compiles it when sampling starts, and
        adds a failed (NULL) grammar sampler to the chain without a word."""
        import llama_cpp

        sampler = llama_cpp.llama_sampler_init_grammar(llama_cpp.llama_model_get_vocab(self.llm.model), gbnf.encode(), b"root")
        if not sampler:
            raise model_error(
                "llama.cpp rejected the grammar built from the JSON schema",
                hint="This is a bug in memcli's schema or in llama-cpp-python's converter: please report it.",
            )
        llama_cpp.llama_sampler_free(sampler)

    def close(self) -> None:
        self._finalizer()


__all__ = ["LlamaChat", "json_grammar"]


_PARAMS_LOCK = threading.Lock()


@contextlib.contextmanager
def plain_weight_buffers() -> Iterator[None]:
    """Load weights into plain CPU buffers, without llama.cpp's "extra buffer types" (AMX tiles and
    repacked layouts). With them, llama-cpp-python 0.3.36 built natively on an Intel Xeon with AMX
    (Sapphire Rapids) segfaulted on the first token of every Q8_0 model tried, the Qwen2.5-0.5B shape
    included; without them the same models run. Llama() has no argument for it, so its default model
    parameters are wrapped while it loads."""
    import llama_cpp.llama_cpp as lib

    original = lib.llama_model_default_params

    def params() -> Any:
        p = original()
        if hasattr(p, "use_extra_bufts"):
            p.use_extra_bufts = False
        return p

    with _PARAMS_LOCK:
        lib.llama_model_default_params = params
        try:
            yield
        finally:
            lib.llama_model_default_params = original
