"""Plain numpy forward pass of a BERT sentence-embedding checkpoint: the conversion reference.

It reads the original float weights from ``model.safetensors`` and follows Hugging Face's
``BertModel`` step by step (word + position + token-type-0 embeddings, LayerNorm, N post-norm
encoder layers with exact erf GELU), then sentence-transformers' mean pooling and L2
normalisation. It shares no code with llama.cpp or with the converter. It computes in float64 so
the reference itself adds no noise worth mentioning.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt
from safetensors.numpy import load_file

Array = npt.NDArray[np.float64]

_erf = np.vectorize(math.erf, otypes=[np.float64])


def _gelu(x: Array) -> Array:
    result: Array = 0.5 * x * (1.0 + _erf(x / math.sqrt(2.0)))
    return result


def _layer_norm(x: Array, weight: Array, bias: Array, eps: float) -> Array:
    mean = x.mean(axis=-1, keepdims=True)
    var = ((x - mean) ** 2).mean(axis=-1, keepdims=True)
    result: Array = (x - mean) / np.sqrt(var + eps) * weight + bias
    return result


def _softmax(x: Array) -> Array:
    shifted = np.exp(x - x.max(axis=-1, keepdims=True))
    result: Array = shifted / shifted.sum(axis=-1, keepdims=True)
    return result


class NumpyBert:
    """Load once, then :meth:`embed` token ids (including [CLS] and [SEP]) into a unit vector."""

    def __init__(self, model_dir: Path) -> None:
        config = json.loads((model_dir / "config.json").read_text(encoding="utf-8"))
        self.n_layers: int = config["num_hidden_layers"]
        self.n_heads: int = config["num_attention_heads"]
        self.eps: float = config.get("layer_norm_eps", 1e-12)
        raw = load_file(str(model_dir / "model.safetensors"))
        self.w: dict[str, Array] = {k.removeprefix("bert."): v.astype(np.float64) for k, v in raw.items()}

    def hidden_states(self, ids: Sequence[int]) -> Array:
        """Last-layer hidden states, shape (len(ids), hidden_size)."""
        w = self.w
        positions = np.arange(len(ids))
        x = (
            w["embeddings.word_embeddings.weight"][np.asarray(ids)]
            + w["embeddings.position_embeddings.weight"][positions]
            + w["embeddings.token_type_embeddings.weight"][0]
        )
        x = _layer_norm(x, w["embeddings.LayerNorm.weight"], w["embeddings.LayerNorm.bias"], self.eps)
        n_tokens, dim = x.shape
        head_dim = dim // self.n_heads
        for layer in range(self.n_layers):
            p = f"encoder.layer.{layer}."

            def linear(inp: Array, name: str, p: str = p) -> Array:
                out: Array = inp @ w[p + name + ".weight"].T + w[p + name + ".bias"]
                return out

            def heads(t: Array) -> Array:
                return t.reshape(n_tokens, self.n_heads, head_dim).transpose(1, 0, 2)

            q = heads(linear(x, "attention.self.query"))
            k = heads(linear(x, "attention.self.key"))
            v = heads(linear(x, "attention.self.value"))
            attn = _softmax(q @ k.transpose(0, 2, 1) / math.sqrt(head_dim)) @ v
            context = attn.transpose(1, 0, 2).reshape(n_tokens, dim)
            x = _layer_norm(
                x + linear(context, "attention.output.dense"),
                w[p + "attention.output.LayerNorm.weight"],
                w[p + "attention.output.LayerNorm.bias"],
                self.eps,
            )
            ffn = linear(_gelu(linear(x, "intermediate.dense")), "output.dense")
            x = _layer_norm(x + ffn, w[p + "output.LayerNorm.weight"], w[p + "output.LayerNorm.bias"], self.eps)
        return x

    def embed(self, ids: Sequence[int]) -> Array:
        """Mean over every token (sentence-transformers' pooling without padding), unit length."""
        pooled = self.hidden_states(ids).mean(axis=0)
        result: Array = pooled / np.linalg.norm(pooled)
        return result
