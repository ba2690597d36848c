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
import json
import os
import tempfile
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from memcli.errors import model_error
from memcli.paths import ensure_private_dir

REQUIRED_FILES = ("config.json", "model.safetensors", "vocab.txt")
SUPPORTED_ARCHITECTURES = frozenset({"BertModel"})
#: sentence-transformers pooling flags we can express in llama.cpp, mapped to our names.
SUPPORTED_POOLING = {"pooling_mode_mean_tokens": "mean", "pooling_mode_cls_token": "cls"}
#: Our own GGUF key: the longest input the model was trained on (llama.cpp ignores unknown keys).
TRAIN_MAX_TOKENS_KEY = "memcli.train_max_tokens"

_ARCH = "bert"
_SPECIAL_DEFAULTS = {
    "cls_token": "[CLS]",
    "sep_token": "[SEP]",
    "pad_token": "[PAD]",
    "unk_token": "[UNK]",
    "mask_token": "[MASK]",
}
# llama.cpp's pooling_type values (gguf.PoolingType).
_POOLING_NAMES = {0: "none", 1: "mean", 2: "cls", 3: "last", 4: "rank"}
_SKIPPED_TENSORS = ("embeddings.position_ids", "pooler.", "cls.")
# Read by row lookup or added whole; llama.cpp's converter keeps them F32 too.
_F32_MATRICES = frozenset({"position_embd.weight", "token_types.weight"})


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


@dataclass(frozen=True)
class _Vocab:
    tokens: list[str]  # as llama.cpp wants them, padded to config.json's vocab_size
    n_pieces: int  # entries of vocab.txt; rows after them are unreachable padding
    special_ids: dict[str, int]  # "cls_token" -> id, ...


@dataclass(frozen=True)
class _BertConfig:
    dim: int
    n_layers: int
    n_heads: int
    ffn_dim: int
    context_length: int
    vocab_size: int
    type_vocab_size: int
    layer_norm_eps: float


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

    config = _read_bert_config(src_dir)
    pooling = _read_pooling(src_dir)
    train_max_tokens = _read_train_max_tokens(src_dir, config.context_length)
    tokenizer_config = _read_json(src_dir / "tokenizer_config.json", required=False)
    _check_lowercasing(src_dir, tokenizer_config)
    vocab = _read_vocab(src_dir / "vocab.txt", config.vocab_size, tokenizer_config)
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


def _read_json(path: Path, *, required: bool) -> dict[str, Any]:
    if not path.is_file():
        if required:
            raise model_error(f"{path.name} is missing from {path.parent}", hint="download the model again")
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise model_error(f"cannot read {path}: {exc}", hint="download the model again") from exc
    if not isinstance(data, dict):
        raise model_error(f"{path} is not a JSON object", hint="download the model again")
    return data


def _read_bert_config(src_dir: Path) -> _BertConfig:
    raw = _read_json(src_dir / "config.json", required=True)
    architectures = raw.get("architectures") or []
    supported = SUPPORTED_ARCHITECTURES
    if not isinstance(architectures, list) or not supported.intersection(architectures):
        raise model_error(
            f"unsupported model architecture {architectures!r} in {src_dir / 'config.json'}",
            hint=f"only BERT sentence-embedding checkpoints ({', '.join(sorted(supported))}) "
            "can be converted; use a ready-made GGUF for other models",
        )
    if raw.get("position_embedding_type", "absolute") != "absolute":
        raise model_error(
            f"unsupported position_embedding_type {raw['position_embedding_type']!r}",
            hint="only absolute position embeddings are supported",
        )
    if raw.get("hidden_act", "gelu") != "gelu":
        raise model_error(f"unsupported activation {raw['hidden_act']!r}", hint="only BERT's 'gelu' is supported")

    def integer(key: str, default: int | None = None) -> int:
        value = raw.get(key, default)
        if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
            raise model_error(f"config.json has no valid {key!r} (got {value!r})", hint="download the model again")
        return value

    eps = raw.get("layer_norm_eps", 1e-12)
    if not isinstance(eps, (int, float)) or isinstance(eps, bool) or eps <= 0:
        raise model_error(f"config.json has an invalid layer_norm_eps {eps!r}", hint="download the model again")
    config = _BertConfig(
        dim=integer("hidden_size"),
        n_layers=integer("num_hidden_layers"),
        n_heads=integer("num_attention_heads"),
        ffn_dim=integer("intermediate_size"),
        context_length=integer("max_position_embeddings"),
        vocab_size=integer("vocab_size"),
        type_vocab_size=integer("type_vocab_size", 2),
        layer_norm_eps=float(eps),
    )
    if config.dim % config.n_heads:
        raise model_error(
            f"hidden_size {config.dim} is not a multiple of num_attention_heads {config.n_heads}",
            hint="config.json is inconsistent; download the model again",
        )
    return config


def _pooling_config_path(src_dir: Path) -> Path:
    # sentence-transformers names its modules in modules.json; "1_Pooling" is the usual folder.
    modules = src_dir / "modules.json"
    if modules.is_file():
        try:
            entries = json.loads(modules.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise model_error(f"cannot read {modules}: {exc}", hint="download the model again") from exc
        for entry in entries if isinstance(entries, list) else []:
            if isinstance(entry, dict) and str(entry.get("type", "")).endswith(".Pooling"):
                return src_dir / str(entry.get("path", "1_Pooling")) / "config.json"
    return src_dir / "1_Pooling" / "config.json"


def _read_pooling(src_dir: Path) -> str:
    """The checkpoint's pooling; mean (sentence-transformers' default) when it does not say."""
    pooling_file = _pooling_config_path(src_dir)
    if not pooling_file.is_file():
        return "mean"
    raw = _read_json(pooling_file, required=True)
    enabled = sorted(k for k, v in raw.items() if k.startswith("pooling_mode_") and v is True)
    if len(enabled) == 1 and enabled[0] in SUPPORTED_POOLING:
        return SUPPORTED_POOLING[enabled[0]]
    raise model_error(
        f"unsupported pooling {enabled or 'none'} in {pooling_file}",
        hint="llama.cpp pools by mean or by the [CLS] token only; this model cannot be converted",
    )


def _read_train_max_tokens(src_dir: Path, context_length: int) -> int:
    raw = _read_json(src_dir / "sentence_bert_config.json", required=False)
    value = raw.get("max_seq_length")
    if isinstance(value, int) and not isinstance(value, bool) and 0 < value <= context_length:
        return value
    return context_length


def _check_lowercasing(src_dir: Path, tokenizer_config: Mapping[str, Any]) -> None:
    lowercase = tokenizer_config.get("do_lower_case", True)
    tokenizer_json = src_dir / "tokenizer.json"
    if tokenizer_json.is_file():
        normalizer = _read_json(tokenizer_json, required=True).get("normalizer") or {}
        if isinstance(normalizer, dict) and normalizer.get("type") == "BertNormalizer":
            lowercase = lowercase and normalizer.get("lowercase", True)
    if lowercase is not True:
        raise model_error(
            f"the tokenizer of {src_dir} is cased",
            hint="llama.cpp's WordPiece tokenizer always lowercases: only uncased BERT models convert correctly",
        )


def _special_token(tokenizer_config: Mapping[str, Any], key: str) -> str:
    value = tokenizer_config.get(key, _SPECIAL_DEFAULTS[key])
    if isinstance(value, dict):  # transformers' AddedToken serialisation
        value = value.get("content", _SPECIAL_DEFAULTS[key])
    return str(value)


def _read_vocab(vocab_file: Path, vocab_size: int, tokenizer_config: Mapping[str, Any]) -> _Vocab:
    try:
        pieces = vocab_file.read_text(encoding="utf-8").split("\n")
    except (OSError, UnicodeDecodeError) as exc:
        raise model_error(f"cannot read {vocab_file}: {exc}", hint="download the model again") from exc
    if pieces and pieces[-1] == "":
        pieces.pop()
    pieces = [p.rstrip("\r") for p in pieces]
    if not pieces or len(pieces) > vocab_size:
        raise model_error(
            f"{vocab_file} has {len(pieces)} entries but config.json says vocab_size {vocab_size}",
            hint="the vocabulary does not belong to these weights; download the model again",
        )
    ids: dict[str, int] = {}
    for index, piece in enumerate(pieces):
        ids.setdefault(piece, index)
    special_ids: dict[str, int] = {}
    for key in _SPECIAL_DEFAULTS:
        token = _special_token(tokenizer_config, key)
        if token in ids:
            special_ids[key] = ids[token]
        elif key in ("cls_token", "sep_token", "unk_token"):
            raise model_error(
                f"special token {token!r} ({key}) is not in {vocab_file}",
                hint="the vocabulary is not a BERT WordPiece vocabulary",
            )
    special = set(special_ids.values())
    tokens = [
        piece if index in special else piece[2:] if piece.startswith("##") else "\u2581" + piece
        for index, piece in enumerate(pieces)
    ]
    # Embedding rows without a vocabulary entry: unreachable, but llama.cpp wants a name for each.
    tokens.extend(f"[PAD{index}]" for index in range(len(pieces), vocab_size))
    # llama.cpp aborts the whole process (GGML_ASSERT, not an exception) when loading a vocab
    # with two equal token texts, so refuse here, where it is still a clear error.
    seen: dict[str, int] = {}
    for index, token in enumerate(tokens):
        first = seen.setdefault(token, index)
        if first != index:
            raise model_error(
                f"{vocab_file} maps two entries ({first} and {index}) to the same token {token!r}",
                hint="the vocabulary is damaged or not a BERT WordPiece vocabulary",
            )
    return _Vocab(tokens, len(pieces), special_ids)


# --- writing the GGUF -------------------------------------------------------------------------


def _write_gguf(
    path: Path,
    src_dir: Path,
    config: _BertConfig,
    vocab: _Vocab,
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

    for gguf_name, array in _converted_tensors(src_dir, config):
        writer.add_tensor(gguf_name, array)
    try:
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
    finally:
        writer.close()


def _expected_tensor_names(n_layers: int) -> set[str]:
    names = {"token_embd.weight", "position_embd.weight", "token_types.weight"}
    names |= {f"token_embd_norm.{p}" for p in ("weight", "bias")}
    per_layer = (
        "attn_q",
        "attn_k",
        "attn_v",
        "attn_output",
        "attn_output_norm",
        "ffn_up",
        "ffn_down",
        "layer_output_norm",
    )
    for layer in range(n_layers):
        names |= {f"blk.{layer}.{part}.{p}" for part in per_layer for p in ("weight", "bias")}
    return names


def _converted_tensors(src_dir: Path, config: _BertConfig) -> Iterator[tuple[str, Any]]:
    """Yield (GGUF name, numpy array) for every tensor llama.cpp needs, checked for completeness."""
    import gguf
    import numpy as np

    tensor_map = gguf.get_tensor_name_map(gguf.MODEL_ARCH.BERT, config.n_layers)
    expected_shapes = {
        "token_embd.weight": (config.vocab_size, config.dim),
        "position_embd.weight": (config.context_length, config.dim),
        "token_types.weight": (config.type_vocab_size, config.dim),
    }
    seen: set[str] = set()
    for hf_name, array in _safetensors_arrays(src_dir / "model.safetensors"):
        name = hf_name.removeprefix("bert.")
        if name.endswith(".gamma"):
            name = name[: -len(".gamma")] + ".weight"
        elif name.endswith(".beta"):
            name = name[: -len(".beta")] + ".bias"
        if name.startswith(_SKIPPED_TENSORS):
            continue
        gguf_name = tensor_map.get_name(name, try_suffixes=(".weight", ".bias"))
        if gguf_name is None:
            raise model_error(
                f"unexpected tensor {hf_name!r} in model.safetensors",
                hint="not a plain BERT encoder, or config.json's num_hidden_layers is wrong",
            )
        if not np.issubdtype(array.dtype, np.floating):
            raise model_error(
                f"tensor {hf_name!r} has dtype {array.dtype}, not floating point",
                hint="download the model again",
            )
        expected = expected_shapes.get(gguf_name)
        if expected is not None and tuple(array.shape) != expected:
            raise model_error(
                f"tensor {hf_name!r} has shape {tuple(array.shape)}, expected {expected}",
                hint="config.json does not belong to these weights; download the model again",
            )
        if array.ndim == 2 and gguf_name not in _F32_MATRICES:
            converted = array.astype(np.float16)
            if not np.isfinite(converted).all():
                raise model_error(
                    f"tensor {hf_name!r} overflows float16",
                    hint="this checkpoint cannot be converted to F16",
                )
        else:
            converted = array.astype(np.float32)
        seen.add(gguf_name)
        yield gguf_name, converted
    missing = _expected_tensor_names(config.n_layers) - seen
    if missing:
        raise model_error(
            f"model.safetensors lacks {len(missing)} tensors, e.g. {sorted(missing)[:3]}",
            hint="the checkpoint is incomplete or not a BERT model; download it again",
        )


def _safetensors_arrays(path: Path) -> Iterator[tuple[str, Any]]:
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="numpy") as handle:
            for key in handle.keys():  # noqa: SIM118 (safe_open is not a dict)
                try:
                    yield key, handle.get_tensor(key)
                except TypeError as exc:  # e.g. bfloat16, which numpy cannot represent
                    raise model_error(
                        f"tensor {key!r} in {path} uses a dtype numpy cannot read ({exc})",
                        hint="convert the checkpoint to float32 or float16 safetensors first",
                    ) from exc
    except (SafetensorError, OSError) as exc:
        raise model_error(
            f"cannot read {path}: {exc}",
            hint="the weights file is damaged or not safetensors; download it again",
        ) from exc


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
