"""Random-weight llama.cpp chat models, for tests and speed benchmarks only.

No machine we build on reaches a model hub, yet the llama.cpp chat path (loading, chat templates,
streaming, grammar-constrained JSON, the KV cache, the OpenAI-compatible server) deserves tests that run
the real engine. :func:`write_gguf` writes a GGUF that llama.cpp loads like any other chat model: a
llama (or qwen2) architecture, a byte-fallback SentencePiece-style vocab, and a ChatML chat template.
Its weights are random, so what it says is noise, but:

- grammar-constrained output is still valid for the grammar (that is the grammar's job, not the model's);
- llama.cpp's speed does not depend on weight values, so the ``qwen05b`` preset (the Qwen2.5-0.5B shape,
  Q8_0) gives honest timings for prompt evaluation and generation.

Never ship or recommend these files as models. Everything is deterministic for a given seed.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, fields, replace
from itertools import product
from pathlib import Path
from string import ascii_lowercase
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

#: ChatML, written the way model repos write it (llama-cpp-python then formats with this Jinja template
#: rather than one of its built-in formats, as it does for real models).
CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)

_SPECIAL = ("<unk>", "<s>", "</s>")  # ids 0, 1, 2 as in Llama's SentencePiece vocab
_CHAT_CONTROL = ("<|im_start|>", "<|im_end|>")
# Whole-word pieces, so common English (and JSON keys) tokenise to a few tokens like with a real vocab.
_WORDS = (
    "the a an and or of to in on at for with is are was were be been have has had I you he she it we "
    "they my your his her our their me him us them this that what when where who why how not no yes do "
    "did like likes love work works lives live name friend sister brother mother father dog cat coffee "
    "tea morning today yesterday tomorrow week year hiking music book movie city home job project "
    "meeting fact facts text type when forget true false null"
)


@dataclass(frozen=True)
class Shape:
    """The architecture and size of a synthetic model."""

    arch: str = "llama"  # "llama" or "qwen2" (qwen2 adds q/k/v biases)
    n_layers: int = 2
    d_model: int = 64
    n_heads: int = 4
    n_kv_heads: int = 2
    ffn: int = 128
    vocab_size: int = 512
    context_length: int = 4096
    weight_type: str = "f16"  # matrices: "f32", "f16" or "q8_0"; norms and biases stay f32
    tie_embeddings: bool = False  # no output.weight: llama.cpp reuses token_embd (as Qwen2.5-0.5B does)
    rope_base: float = 10000.0
    rms_eps: float = 1e-5
    chat_template: str | None = CHATML_TEMPLATE  # None writes a model without one (to test that path)
    name: str = "memcli-synthetic"


PRESETS: dict[str, Shape] = {
    # For tests: ~0.3 MB, written in well under a second.
    "tiny": Shape(),
    # The Qwen2.5-0.5B-Instruct shape at Q8_0 (~0.5 GB), for speed benchmarks.
    "qwen05b": Shape(
        arch="qwen2",
        n_layers=24,
        d_model=896,
        n_heads=14,
        n_kv_heads=2,
        ffn=4864,
        vocab_size=151936,
        context_length=32768,
        weight_type="q8_0",
        tie_embeddings=True,
        rope_base=1_000_000.0,
        rms_eps=1e-6,
        name="memcli-synthetic-qwen2.5-0.5b-shape",
    ),
}

_ROWS_PER_CHUNK = 4096  # bounds memory while generating the 151k x 896 embedding table


def write_gguf(path: str | os.PathLike[str], preset: str = "tiny", *, seed: int = 0, **overrides: Any) -> Path:
    """Write a random-weight chat GGUF to ``path`` (atomically) and return the path.

    ``preset`` is a key of :data:`PRESETS`; ``overrides`` replace fields of its :class:`Shape`
    (e.g. ``n_layers=4, weight_type="q8_0"``). The same arguments always give the same bytes.
    """
    shape = _shape(preset, overrides)
    dest = Path(path)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".partial", dir=dest.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        _write(tmp, shape, seed)
        os.replace(tmp, dest)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return dest


def _shape(preset: str, overrides: dict[str, Any]) -> Shape:
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; known: {', '.join(PRESETS)}")
    known = {f.name for f in fields(Shape)}
    unknown = set(overrides) - known
    if unknown:
        raise ValueError(f"unknown shape fields {sorted(unknown)}; known: {sorted(known)}")
    shape = replace(PRESETS[preset], **overrides)
    if shape.arch not in ("llama", "qwen2"):
        raise ValueError(f"arch must be 'llama' or 'qwen2', not {shape.arch!r}")
    if shape.weight_type not in ("f32", "f16", "q8_0"):
        raise ValueError(f"weight_type must be 'f32', 'f16' or 'q8_0', not {shape.weight_type!r}")
    if shape.d_model % shape.n_heads or shape.n_heads % shape.n_kv_heads:
        raise ValueError("d_model must divide by n_heads, and n_heads by n_kv_heads")
    if shape.weight_type == "q8_0" and (shape.d_model % 32 or shape.ffn % 32):
        raise ValueError("q8_0 needs d_model and ffn to be multiples of 32 (its block size)")
    return shape


def vocab(size: int) -> tuple[list[str], list[float], list[int]]:
    """Token strings, scores and types of a byte-fallback SentencePiece vocab of exactly ``size`` tokens.

    Every string is unique: llama.cpp aborts the whole process on a duplicate token.
    """
    import gguf

    tt = gguf.TokenType
    tokens = [*_SPECIAL, *_CHAT_CONTROL, *(f"<0x{b:02X}>" for b in range(256))]
    types = [int(tt.UNKNOWN)] + [int(tt.CONTROL)] * 4 + [int(tt.BYTE)] * 256
    if size <= len(tokens):
        raise ValueError(f"vocab_size {size} leaves no room after the {len(tokens)} special and byte tokens")
    # SentencePiece scores are log-probabilities: earlier (shorter, commoner) pieces score higher.
    scores = [0.0] * len(tokens)
    seen = set(tokens)
    for piece in _pieces():
        if len(tokens) == size:
            break
        if piece not in seen:
            seen.add(piece)
            scores.append(-float(len(tokens)))
            tokens.append(piece)
            types.append(int(tt.NORMAL))
    if len(tokens) < size:
        raise ValueError(f"vocab_size {size} is larger than this generator can fill ({len(tokens)})")
    return tokens, scores, types


def _pieces() -> Iterator[str]:
    """Normal pieces: printable ASCII, word starts, common words, then letter n-grams as filler."""
    yield "▁"
    yield from (chr(c) for c in range(33, 127))
    yield from ("▁" + c for c in ascii_lowercase)
    for w in _WORDS.split():
        # SentencePiece only merges pairs that are in the vocab, so a word needs all its prefixes.
        yield from ("▁" + w[:k] for k in range(1, len(w) + 1))
    for n in range(2, 6):
        for letters in product(ascii_lowercase, repeat=n):
            yield "▁" + "".join(letters)
            yield "".join(letters)


def _write(path: Path, shape: Shape, seed: int) -> None:
    import gguf
    import numpy as np

    rng = np.random.default_rng(seed)
    writer = gguf.GGUFWriter(path, shape.arch)
    _add_metadata(writer, shape)
    tensors = list(_tensor_plan(shape))
    for name, rows, cols, matrix in tensors:
        qtype = _qtype(shape, matrix)
        nbytes = rows * cols * _bytes_per_value(qtype)
        writer.add_tensor_info(name, (rows, cols) if rows > 1 else (cols,), np.dtype(np.float32), int(nbytes), raw_dtype=qtype)
    try:
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_ti_data_to_file()
        for name, rows, cols, matrix in tensors:
            writer.write_tensor_data(_tensor(rng, name, rows, cols, _qtype(shape, matrix)))
    finally:
        writer.close()


def _add_metadata(writer: Any, shape: Shape) -> None:
    import gguf

    tokens, scores, types = vocab(shape.vocab_size)
    writer.add_name(shape.name)
    writer.add_file_type(
        {"f32": gguf.LlamaFileType.ALL_F32, "f16": gguf.LlamaFileType.MOSTLY_F16, "q8_0": gguf.LlamaFileType.MOSTLY_Q8_0}[
            shape.weight_type
        ]
    )
    writer.add_context_length(shape.context_length)
    writer.add_embedding_length(shape.d_model)
    writer.add_block_count(shape.n_layers)
    writer.add_feed_forward_length(shape.ffn)
    writer.add_head_count(shape.n_heads)
    writer.add_head_count_kv(shape.n_kv_heads)
    writer.add_rope_freq_base(shape.rope_base)
    writer.add_layer_norm_rms_eps(shape.rms_eps)
    writer.add_vocab_size(shape.vocab_size)
    writer.add_tokenizer_model("llama")
    writer.add_token_list(tokens)
    writer.add_token_scores(scores)
    writer.add_token_types(types)
    writer.add_unk_token_id(0)
    writer.add_bos_token_id(1)
    # <|im_end|> is EOS, so generation stops where a ChatML turn ends.
    writer.add_eos_token_id(tokens.index("<|im_end|>"))
    writer.add_add_bos_token(False)  # ChatML models (Qwen) start prompts without <s>
    writer.add_add_eos_token(False)
    if shape.chat_template is not None:
        writer.add_chat_template(shape.chat_template)


def _tensor_plan(shape: Shape) -> Iterator[tuple[str, int, int, bool]]:
    """(GGUF name, rows, columns, is a weight matrix). numpy shape (out, in), as llama.cpp expects."""
    d, head = shape.d_model, shape.d_model // shape.n_heads
    kv = shape.n_kv_heads * head
    yield "token_embd.weight", shape.vocab_size, d, True
    for i in range(shape.n_layers):
        b = f"blk.{i}."
        yield b + "attn_norm.weight", 1, d, False
        yield b + "attn_q.weight", d, d, True
        yield b + "attn_k.weight", kv, d, True
        yield b + "attn_v.weight", kv, d, True
        if shape.arch == "qwen2":
            yield b + "attn_q.bias", 1, d, False
            yield b + "attn_k.bias", 1, kv, False
            yield b + "attn_v.bias", 1, kv, False
        yield b + "attn_output.weight", d, d, True
        yield b + "ffn_norm.weight", 1, d, False
        yield b + "ffn_gate.weight", shape.ffn, d, True
        yield b + "ffn_up.weight", shape.ffn, d, True
        yield b + "ffn_down.weight", d, shape.ffn, True
    yield "output_norm.weight", 1, d, False
    if not shape.tie_embeddings:
        yield "output.weight", shape.vocab_size, d, True


def _qtype(shape: Shape, matrix: bool) -> Any:
    import gguf

    q = gguf.GGMLQuantizationType
    if not matrix:
        return q.F32
    return {"f32": q.F32, "f16": q.F16, "q8_0": q.Q8_0}[shape.weight_type]


def _bytes_per_value(qtype: Any) -> float:
    import gguf

    block, type_size = gguf.GGML_QUANT_SIZES[qtype]
    return float(type_size) / float(block)


def _tensor(rng: np.random.Generator, name: str, rows: int, cols: int, qtype: Any) -> npt.NDArray[Any]:
    import gguf
    import numpy as np

    if name.endswith("norm.weight"):
        return np.ones(cols, dtype=np.float32)
    if rows == 1:  # biases
        return (rng.standard_normal(cols, dtype=np.float32) * 0.02).astype(np.float32)
    chunks = []
    for start in range(0, rows, _ROWS_PER_CHUNK):
        n = min(_ROWS_PER_CHUNK, rows - start)
        values = rng.standard_normal((n, cols), dtype=np.float32) * np.float32(0.02)
        chunks.append(gguf.quants.quantize(values, qtype))
    return np.concatenate(chunks) if len(chunks) > 1 else chunks[0]


__all__ = ["CHATML_TEMPLATE", "PRESETS", "Shape", "vocab", "write_gguf"]
