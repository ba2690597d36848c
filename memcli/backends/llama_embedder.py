"""Embeddings through llama-cpp-python (a GGUF embedding model, e.g. the converted all-MiniLM-L6-v2).

Measured on the 2-core machines (see benchmarks/RESULTS.md): one text per call beats passing a list,
so we embed one text at a time. Both thread counts are set: llama.cpp's batch default is every core,
and two embedders at once then slow each other down several-fold.
"""

from __future__ import annotations

import atexit
import contextlib
import hashlib
import json
import math
import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from memcli.backends.base import Vector
from memcli.errors import model_error

if TYPE_CHECKING:
    from llama_cpp import Llama

DEFAULT_MAX_TOKENS = 256  # sentence embedders are mostly trained on <= 256 tokens


def default_threads() -> int:
    """Half the CPUs, at most 4. llama.cpp's threads spin while they wait: on a 2-core machine with one
    other busy process, 2 threads embedded 4x slower than 1 (165 vs 40 ms per text, measured here)."""
    return max(1, min(4, (os.cpu_count() or 2) // 2))


def file_sha256(path: Path) -> str:
    """sha256 of a model file, cached beside it (keyed by size and mtime) so opening stays cheap."""
    st = path.stat()
    sidecar = path.with_name(path.name + ".sha256.json")
    key = {"size": st.st_size, "mtime_ns": st.st_mtime_ns}
    try:
        cached = json.loads(sidecar.read_text())
        if cached.get("key") == key:
            return str(cached["sha256"])
    except (OSError, ValueError):
        pass
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    digest = h.hexdigest()
    # A read-only models dir only costs us the cache. Owner-only like everything memcli writes, also when
    # a program using the API has a looser umask.
    with contextlib.suppress(OSError), os.fdopen(os.open(sidecar, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as f:
        f.write(json.dumps({"key": key, "sha256": digest}))
    return digest


def _normalise(v: Sequence[float]) -> Vector:
    n = math.sqrt(sum(x * x for x in v)) or 1.0
    return [x / n for x in v]


class LlamaEmbedder:
    def __init__(
        self,
        path: Path,
        *,
        n_threads: int = 0,
        n_gpu_layers: int = 0,
        n_ctx: int = 512,
        max_tokens: int = 0,
        query_prefix: str = "",
        document_prefix: str = "",
    ) -> None:
        if not path.is_file():
            raise model_error(f"embedding model not found: {path}", hint="Check [embedding] model (`memcli config show`).")
        with path.open("rb") as f:
            if f.read(4) != b"GGUF":
                raise model_error(
                    f"{path} is not a GGUF model file",
                    hint="Point [embedding] model at a .gguf file, or convert a checkpoint with `memcli models import DIR`.",
                )
        try:
            from llama_cpp import Llama
        except ImportError as e:  # pragma: no cover - broken install
            raise model_error(f"llama-cpp-python is not installed: {e}", hint="Run ./scripts/setup again.")
        threads = n_threads or default_threads()
        try:
            self.llm: Llama = Llama(
                model_path=str(path),
                embedding=True,
                n_ctx=n_ctx,
                n_batch=n_ctx,
                n_ubatch=n_ctx,
                n_threads=threads,
                n_threads_batch=threads,
                n_gpu_layers=n_gpu_layers,
                verbose=False,
            )
        except Exception as e:  # llama.cpp reports a bad file as ValueError/RuntimeError
            raise model_error(
                f"llama.cpp could not load {path}: {e}",
                hint="The file may be truncated or not an embedding model; re-download or re-convert it.",
            )
        self.path = path
        self._lock = threading.Lock()
        self.dim = int(self.llm.n_embd())
        self.n_ctx = n_ctx
        self.max_tokens = min(max_tokens or DEFAULT_MAX_TOKENS, n_ctx)
        self.query_prefix = query_prefix
        self.document_prefix = document_prefix
        self.model_id = f"{path.stem}@{file_sha256(path)[:16]}"

    def count_tokens(self, text: str) -> int:
        with self._lock:
            return len(self.llm.tokenize(text.encode("utf-8"), add_bos=True, special=False))

    def _embed(self, text: str) -> Vector:
        with self._lock:  # a llama.cpp context is not thread-safe (chat embeds from a worker thread)
            out: Any = self.llm.embed(text, truncate=True)
        # A pooled model returns one vector; guard against a model without pooling (one per token).
        if out and isinstance(out[0], list):
            raise model_error(
                f"{self.path.name} returned per-token vectors: it has no pooling type",
                hint="Use a sentence-embedding GGUF (with pooling), e.g. one converted by `memcli models import`.",
            )
        return _normalise(out)

    def embed_documents(self, texts: Sequence[str]) -> list[Vector]:
        return [self._embed(self.document_prefix + t) for t in texts]

    def embed_query(self, text: str) -> Vector:
        return self._embed(self.query_prefix + text)


_CACHE: dict[tuple[Any, ...], LlamaEmbedder] = {}


@atexit.register
def _close_all() -> None:
    # Free models before interpreter teardown: llama-cpp-python's own finaliser then finds its
    # module globals gone and prints "Exception ignored in Llama.__del__".
    for emb in _CACHE.values():
        emb.llm.close()
    _CACHE.clear()


def load(path: Path, **kwargs: Any) -> LlamaEmbedder:
    """Load (or reuse, within this process) an embedder: loading costs ~0.2 s and memory."""
    st = path.stat() if path.exists() else None
    key = (str(path), st.st_mtime_ns if st else None, tuple(sorted(kwargs.items())))
    if key not in _CACHE:
        _CACHE[key] = LlamaEmbedder(path, **kwargs)
    return _CACHE[key]
