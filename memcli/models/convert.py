"""Convert a local Hugging Face BERT sentence-embedding checkpoint into a llama.cpp GGUF.

No machine we build on reaches a model hub, so the embedding model ships as plain weights
(``config.json``, ``model.safetensors``, ``vocab.txt``) and becomes a llama.cpp ``bert`` GGUF here.
What llama.cpp expects, and why the choices below:

- WordPiece vocab as tokenizer model ``bert``: word-start pieces carry the ``▁`` (U+2581) prefix,
  ``##`` continuation pieces lose their ``##``, special tokens stay as they are. llama.cpp uses the
  BOS id as [CLS] and appends the SEP id.
- llama.cpp's WordPiece tokenizer always lowercases, so cased checkpoints are refused: their
  embeddings would silently be computed from the wrong tokens.
- Weight matrices are F16 and norms, biases and the small position/token-type tables F32, as in
  llama.cpp's own converter; against an F32 numpy forward pass of the original weights this keeps
  cosine above 0.9999 on MiniLM (see ``tests/test_convert.py``) at half the size.
- The file is written under a temporary name in the destination folder and renamed into place, so a
  crash never leaves a half-written GGUF under the final name.

Heavy imports (numpy, gguf, safetensors) happen inside the functions that need them.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from memcli.errors import model_error
from memcli.models.checkpoint import (
    SUPPORTED_ARCHITECTURES,
    SUPPORTED_POOLING,
    BertConfig,
    Vocab,
    check_lowercasing,
    converted_tensors,
    read_bert_config,
    read_json,
    read_pooling,
    read_train_max_tokens,
    read_vocab,
)
from memcli.paths import ensure_private_dir

REQUIRED_FILES = ("config.json", "model.safetensors", "vocab.txt")
__all__ = ["SUPPORTED_ARCHITECTURES", "SUPPORTED_POOLING", "ConvertedModel", "convert_bert", "file_sha256", "read_gguf_info"]

#: Our own GGUF key: the longest input the model was trained on (llama.cpp ignores unknown keys).
TRAIN_MAX_TOKENS_KEY = "memcli.train_max_tokens"

_ARCH = "bert"
# llama.cpp's pooling_type values (gguf.PoolingType).
_POOLING_NAMES = {0: "none", 1: "mean", 2: "cls", 3: "last", 4: "rank"}


@dataclass(frozen=True)
class ConvertedModel:
    """A GGUF embedding model on disk and the facts callers need about it.

    ``train_max_tokens`` is the longest input the model was trained on (sentence-transformers'
    ``max_seq_length``); chunk text to it rather than relying on truncation at ``context_length``.
    ``sha256`` is the hex digest of the GGUF file. ``pooling`` is ``"mean"`` or ``"cls"`` for
    what :func:`convert_bert` writes (:func:`read_gguf_info` may report others).
    """

    path: Path
    name: str
    dim: int
    n_layers: int
    context_length: int
    train_max_tokens: int
    sha256: str
    pooling: str = "mean"


def convert_bert(src_dir: Path, dest: Path, *, name: str | None = None) -> ConvertedModel:
    """Convert the BERT checkpoint in ``src_dir`` into a llama.cpp GGUF at ``dest``.

    ``src_dir`` holds ``config.json``, ``model.safetensors`` and ``vocab.txt`` (and optionally the
    sentence-transformers files ``1_Pooling/config.json``, ``sentence_bert_config.json``,
    ``tokenizer_config.json``). ``dest`` is replaced atomically; its folder is created owner-only
    when missing. ``name`` goes into ``general.name`` (default: the folder's name).

    Raises :class:`~memcli.errors.MemcliFailure` (exit code MODEL) for a missing folder or file, an
    unsupported architecture, pooling or tokenizer, and unreadable or incomplete weights.
    """
    src_dir = Path(src_dir)
    dest = Path(dest)
    if not src_dir.is_dir():
        raise model_error(
            f"model folder {src_dir} does not exist",
            hint="pass the folder that holds config.json, model.safetensors and vocab.txt",
        )
    for required in REQUIRED_FILES:
        if not (src_dir / required).is_file():
            raise model_error(
                f"{required} is missing from {src_dir}",
                hint="a BERT checkpoint needs config.json, model.safetensors and vocab.txt; "
                "download the complete model folder again",
            )
    if dest.is_dir():
        raise model_error(f"{dest} is a folder", hint="pass the path of the .gguf file to write")

    config = read_bert_config(src_dir)
    pooling = read_pooling(src_dir)
    train_max_tokens = read_train_max_tokens(src_dir, config.context_length)
    tokenizer_config = read_json(src_dir / "tokenizer_config.json", required=False)
    check_lowercasing(src_dir, tokenizer_config)
    vocab = read_vocab(src_dir / "vocab.txt", config.vocab_size, tokenizer_config)
    model_name = name if name is not None else src_dir.resolve().name

    try:
        ensure_private_dir(dest.parent)
    except OSError as exc:
        raise model_error(f"cannot create {dest.parent}: {exc}", hint="check the permissions of its parent folder") from exc

    def write(tmp_path: Path) -> None:
        _write_gguf(tmp_path, src_dir, config, vocab, model_name, pooling, train_max_tokens)

    sha256 = _write_atomically(dest, write)
    return ConvertedModel(
        path=dest,
        name=model_name,
        dim=config.dim,
        n_layers=config.n_layers,
        context_length=config.context_length,
        train_max_tokens=train_max_tokens,
        sha256=sha256,
        pooling=pooling,
    )


def read_gguf_info(path: Path) -> ConvertedModel:
    """Read back what :func:`convert_bert` records in a ``bert`` GGUF (other BERT GGUFs work too).

    ``train_max_tokens`` falls back to the context length when the file does not record it.
    """
    from gguf import GGUFReader

    path = Path(path)
    if not path.is_file():
        raise model_error(f"model file {path} does not exist", hint="convert or download it first")
    try:
        reader = GGUFReader(path)
    except (ValueError, OSError, IndexError) as exc:
        raise model_error(
            f"{path} is not a readable GGUF file ({exc})",
            hint="delete it and convert or download the model again",
        ) from exc

    def field(key: str) -> Any:
        found = reader.get_field(key)
        return None if found is None else found.contents()

    arch = field("general.architecture")
    if arch != _ARCH:
        raise model_error(
            f"{path} holds a {arch!r} model, not a BERT embedding model",
            hint="use a GGUF converted from a BERT sentence-embedding checkpoint",
        )
    missing = [k for k in ("embedding_length", "block_count", "context_length") if field(f"{_ARCH}.{k}") is None]
    if missing:
        raise model_error(f"{path} lacks the GGUF keys {missing}", hint="convert the model again")
    context_length = int(field(f"{_ARCH}.context_length"))
    train_max = field(TRAIN_MAX_TOKENS_KEY)
    pooling_value = field(f"{_ARCH}.pooling_type")
    pooling = _POOLING_NAMES.get(int(pooling_value), "unknown") if pooling_value is not None else "none"
    name = field("general.name")
    return ConvertedModel(
        path=path,
        name=str(name) if name is not None else path.stem,
        dim=int(field(f"{_ARCH}.embedding_length")),
        n_layers=int(field(f"{_ARCH}.block_count")),
        context_length=context_length,
        train_max_tokens=int(train_max) if train_max is not None else context_length,
        sha256=file_sha256(path),
        pooling=pooling,
    )


def file_sha256(path: Path) -> str:
    """Hex sha256 of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


# --- reading the checkpoint -------------------------------------------------------------------


def _write_gguf(
    path: Path,
    src_dir: Path,
    config: BertConfig,
    vocab: Vocab,
    name: str,
    pooling: str,
    train_max_tokens: int,
) -> None:
    import gguf

    writer = gguf.GGUFWriter(path, _ARCH)
    writer.add_name(name)
    writer.add_context_length(config.context_length)
    writer.add_embedding_length(config.dim)
    writer.add_feed_forward_length(config.ffn_dim)
    writer.add_block_count(config.n_layers)
    writer.add_head_count(config.n_heads)
    writer.add_layer_norm_eps(config.layer_norm_eps)
    writer.add_causal_attention(False)
    writer.add_pooling_type(gguf.PoolingType.MEAN if pooling == "mean" else gguf.PoolingType.CLS)
    writer.add_file_type(gguf.LlamaFileType.MOSTLY_F16)
    writer.add_quantization_version(gguf.GGML_QUANT_VERSION)
    writer.add_uint32(TRAIN_MAX_TOKENS_KEY, train_max_tokens)

    special = set(vocab.special_ids.values())
    token_types = [
        gguf.TokenType.CONTROL if i in special else gguf.TokenType.NORMAL if i < vocab.n_pieces else gguf.TokenType.UNUSED
        for i in range(len(vocab.tokens))
    ]
    writer.add_tokenizer_model("bert")
    writer.add_tokenizer_pre("default")
    writer.add_token_list(vocab.tokens)
    writer.add_token_types(token_types)
    writer.add_token_type_count(config.type_vocab_size)
    # llama.cpp uses BOS as [CLS] and appends SEP; EOS = SEP as in llama.cpp's own converter.
    ids = vocab.special_ids
    writer.add_bos_token_id(ids["cls_token"])
    writer.add_eos_token_id(ids["sep_token"])
    writer.add_sep_token_id(ids["sep_token"])
    writer.add_unk_token_id(ids["unk_token"])
    if "pad_token" in ids:
        writer.add_pad_token_id(ids["pad_token"])
    if "mask_token" in ids:
        writer.add_mask_token_id(ids["mask_token"])
    writer.add_add_bos_token(True)
    writer.add_add_eos_token(True)

    for gguf_name, array in converted_tensors(src_dir, config):
        writer.add_tensor(gguf_name, array)
    try:
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
    finally:
        writer.close()


def _write_atomically(dest: Path, write: Callable[[Path], None]) -> str:
    """Run ``write`` on a temporary file beside ``dest``, fsync it, rename it over ``dest``.

    Returns the sha256 of what was written.
    """
    try:
        fd, tmp_name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".partial", dir=dest.parent)
    except OSError as exc:
        raise model_error(f"cannot write in {dest.parent}: {exc}", hint="check its permissions and free space") from exc
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        try:
            write(tmp)
            with open(tmp, "rb+") as handle:
                os.fsync(handle.fileno())
            os.chmod(tmp, 0o600)
            sha256 = file_sha256(tmp)
            os.replace(tmp, dest)
        except OSError as exc:
            raise model_error(
                f"could not write {dest}: {exc}",
                hint=f"check free space and permissions in {dest.parent}",
            ) from exc
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(dest.parent)
    return sha256


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some filesystems refuse fsync on a folder; the rename itself is still atomic
    finally:
        os.close(fd)


__all__ = ["ConvertedModel", "convert_bert", "file_sha256", "read_gguf_info"]
