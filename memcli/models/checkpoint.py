"""Reading a Hugging Face BERT-family checkpoint for conversion (memcli/models/convert.py): its
config, pooling, vocabulary and tensors, each checked, with a message that names the file at fault."""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from memcli.errors import model_error

SUPPORTED_ARCHITECTURES = frozenset({"BertModel"})
#: sentence-transformers pooling flags we can express in llama.cpp, mapped to our names.
SUPPORTED_POOLING = {"pooling_mode_mean_tokens": "mean", "pooling_mode_cls_token": "cls"}
_SPECIAL_DEFAULTS = {
    "cls_token": "[CLS]",
    "sep_token": "[SEP]",
    "pad_token": "[PAD]",
    "unk_token": "[UNK]",
    "mask_token": "[MASK]",
}
_SKIPPED_TENSORS = ("embeddings.position_ids", "pooler.", "cls.")
# Read by row lookup or added whole; llama.cpp's converter keeps them F32 too.
_F32_MATRICES = frozenset({"position_embd.weight", "token_types.weight"})



@dataclass(frozen=True)
class Vocab:
    tokens: list[str]  # as llama.cpp wants them, padded to config.json's vocab_size
    n_pieces: int  # entries of vocab.txt; rows after them are unreachable padding
    special_ids: dict[str, int]  # "cls_token" -> id, ...


@dataclass(frozen=True)
class BertConfig:
    dim: int
    n_layers: int
    n_heads: int
    ffn_dim: int
    context_length: int
    vocab_size: int
    type_vocab_size: int
    layer_norm_eps: float


def read_json(path: Path, *, required: bool) -> dict[str, Any]:
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


def read_bert_config(src_dir: Path) -> BertConfig:
    raw = read_json(src_dir / "config.json", required=True)
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
    config = BertConfig(
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


def pooling_config_path(src_dir: Path) -> Path:
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


def read_pooling(src_dir: Path) -> str:
    """The checkpoint's pooling; mean (sentence-transformers' default) when it does not say."""
    pooling_file = pooling_config_path(src_dir)
    if not pooling_file.is_file():
        return "mean"
    raw = read_json(pooling_file, required=True)
    enabled = sorted(k for k, v in raw.items() if k.startswith("pooling_mode_") and v is True)
    if len(enabled) == 1 and enabled[0] in SUPPORTED_POOLING:
        return SUPPORTED_POOLING[enabled[0]]
    raise model_error(
        f"unsupported pooling {enabled or 'none'} in {pooling_file}",
        hint="llama.cpp pools by mean or by the [CLS] token only; this model cannot be converted",
    )


def read_train_max_tokens(src_dir: Path, context_length: int) -> int:
    raw = read_json(src_dir / "sentence_bert_config.json", required=False)
    value = raw.get("max_seq_length")
    if isinstance(value, int) and not isinstance(value, bool) and 0 < value <= context_length:
        return value
    return context_length


def check_lowercasing(src_dir: Path, tokenizer_config: Mapping[str, Any]) -> None:
    lowercase = tokenizer_config.get("do_lower_case", True)
    tokenizer_json = src_dir / "tokenizer.json"
    if tokenizer_json.is_file():
        normalizer = read_json(tokenizer_json, required=True).get("normalizer") or {}
        if isinstance(normalizer, dict) and normalizer.get("type") == "BertNormalizer":
            lowercase = lowercase and normalizer.get("lowercase", True)
    if lowercase is not True:
        raise model_error(
            f"the tokenizer of {src_dir} is cased",
            hint="llama.cpp's WordPiece tokenizer always lowercases: only uncased BERT models convert correctly",
        )


def special_token(tokenizer_config: Mapping[str, Any], key: str) -> str:
    value = tokenizer_config.get(key, _SPECIAL_DEFAULTS[key])
    if isinstance(value, dict):  # transformers' AddedToken serialisation
        value = value.get("content", _SPECIAL_DEFAULTS[key])
    return str(value)


def read_vocab(vocab_file: Path, vocab_size: int, tokenizer_config: Mapping[str, Any]) -> Vocab:
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
        token = special_token(tokenizer_config, key)
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
    return Vocab(tokens, len(pieces), special_ids)


# --- writing the GGUF -------------------------------------------------------------------------


def expected_tensor_names(n_layers: int) -> set[str]:
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


def converted_tensors(src_dir: Path, config: BertConfig) -> Iterator[tuple[str, Any]]:
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
    for hf_name, array in safetensors_arrays(src_dir / "model.safetensors"):
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
    missing = expected_tensor_names(config.n_layers) - seen
    if missing:
        raise model_error(
            f"model.safetensors lacks {len(missing)} tensors, e.g. {sorted(missing)[:3]}",
            hint="the checkpoint is incomplete or not a BERT model; download it again",
        )


def safetensors_arrays(path: Path) -> Iterator[tuple[str, Any]]:
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


