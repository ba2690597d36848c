"""The closed catalog of recommended model files, and ``hf:`` specs for anything else.

A catalog entry names one GGUF file on the Hugging Face hub, pinned to a commit, with the sha256 and
size the hub publishes for it (its Git LFS object id). Pinning the commit is what makes the sha256
meaningful: a branch such as ``main`` can move, a commit cannot.

Where a value came from (so a reviewer can re-check it): the hub's file pages ("Git LFS Details:
SHA256") and several independent public projects that pin the same file by commit, size and sha256.
No value here was computed by memcli itself, because no machine we build on can reach the hub. A value
that cannot be verified stays ``None``; :func:`memcli.models.pull.pull` then falls back to the hash the
server announces and reports the result as unverified when there is none.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from memcli.errors import not_found, usage_error

ModelKind = Literal["embedding", "chat", "unknown"]

HF_PREFIX = "hf:"
_SHA256 = re.compile(r"[0-9a-f]{64}")
# Hub repo ids: OWNER/NAME, each part letters, digits, '-', '_', '.' (no '..', no leading '.').
_REPO_PART = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
_REVISION = re.compile(r"[A-Za-z0-9][A-Za-z0-9._/-]*")


@dataclass(frozen=True)
class ModelSpec:
    """One downloadable model file.

    ``sha256`` is the lowercase hex digest of the whole file when known; ``None`` means "trust the
    server's announced hash, if any". ``kind`` is ``"unknown"`` only for ``hf:`` specs.
    """

    name: str
    kind: ModelKind
    repo: str
    filename: str
    revision: str = "main"
    sha256: str | None = None
    size_bytes: int | None = None
    description: str = ""

    @property
    def local_name(self) -> str:
        """The file name under the models directory (a hub path may contain folders)."""
        return self.filename.rsplit("/", 1)[-1]


CATALOG: tuple[ModelSpec, ...] = (
    ModelSpec(
        name="all-minilm-l6-v2",
        kind="embedding",
        repo="second-state/All-MiniLM-L6-v2-Embedding-GGUF",
        filename="all-MiniLM-L6-v2-Q8_0.gguf",
        # Commit, size and sha256 agree across several public pins of this file; the sha256 also
        # matches the hub's LFS details for the file (it was added in commit aa38cf2 and is unchanged).
        revision="544f204f2eaa2d71361ffc74d6df7170285b286a",
        sha256="263215c3cadd6e16740741a7624ab4cbb6c8e777688bd5331ecfbf5681c2f8ed",
        size_bytes=25_008_064,
        description=(
            "sentence-transformers/all-MiniLM-L6-v2, Q8_0 (25 MB, 384 dimensions, English). Trained "
            "on at most 256 tokens: chunk text to that length."
        ),
    ),
    ModelSpec(
        name="bge-small-en-v1.5",
        kind="embedding",
        repo="CompendiumLabs/bge-small-en-v1.5-gguf",
        filename="bge-small-en-v1.5-q8_0.gguf",
        revision="d32f8c040ea3b516330eeb75b72bcc2d3a780ab7",
        sha256="ec38e8da142596baa913124ae50550de284b6916bf59577ef2f0cb9660c2f514",
        size_bytes=36_806_944,
        description="BAAI/bge-small-en-v1.5, Q8_0 (37 MB, 384 dimensions, English, MIT licence).",
    ),
    ModelSpec(
        name="qwen2.5-0.5b-instruct",
        kind="chat",
        repo="Qwen/Qwen2.5-0.5B-Instruct-GGUF",
        filename="qwen2.5-0.5b-instruct-q4_k_m.gguf",
        revision="9217f5db79a29953eb74d5343926648285ec7e67",
        sha256="74a4da8c9fdbcd15bd1f6d01d621410d31c6fc00986f5eb687824e7b93d7a9db",
        # Qwen's own Q4_K_M keeps some tensors at higher precision: 491 MB, not the 398 MB of
        # third-party Q4_K_M files of the same model.
        size_bytes=491_400_032,
        description="Qwen2.5 0.5B Instruct, Q4_K_M from Qwen (491 MB). Fastest; weakest extraction.",
    ),
    ModelSpec(
        name="qwen2.5-1.5b-instruct",
        kind="chat",
        repo="Qwen/Qwen2.5-1.5B-Instruct-GGUF",
        filename="qwen2.5-1.5b-instruct-q4_k_m.gguf",
        revision="91cad51170dc346986eccefdc2dd33a9da36ead9",
        sha256="6a1a2eb6d15622bf3c96857206351ba97e1af16c30d7a74ee38970e434e9407e",
        size_bytes=1_117_320_736,
        description="Qwen2.5 1.5B Instruct, Q4_K_M from Qwen (1.1 GB). Recommended chat model on CPU.",
    ),
)


def catalog_names() -> list[str]:
    return [m.name for m in CATALOG]


def get_model(name: str) -> ModelSpec:
    """The catalog entry called ``name``; raises a not-found failure listing the valid names."""
    for model in CATALOG:
        if model.name == name:
            return model
    raise not_found(
        f"Unknown model {name!r}. Known models: {', '.join(catalog_names())}.",
        hint="Pick one of those names, or give any GGUF on the hub as hf:OWNER/REPO/FILE.gguf[@REVISION].",
    )


def parse_hf_spec(spec: str) -> ModelSpec:
    """Parse ``hf:OWNER/REPO/PATH/TO/FILE.gguf[@REVISION]`` (no checksum is known for these)."""
    if not spec.startswith(HF_PREFIX):
        raise _bad_spec(spec, "it does not start with 'hf:'")
    body = spec[len(HF_PREFIX) :]
    path, sep, revision = body.partition("@")
    if sep and not _REVISION.fullmatch(revision):
        raise _bad_spec(spec, "the revision after '@' is empty or has unexpected characters")
    parts = path.split("/")
    if len(parts) < 3:
        raise _bad_spec(spec, "it needs an owner, a repository and a file name")
    owner, repo_name, *file_parts = parts
    if not (_REPO_PART.fullmatch(owner) and _REPO_PART.fullmatch(repo_name)) or ".." in owner + repo_name:
        raise _bad_spec(spec, "the repository id is not OWNER/NAME")
    if any(p in ("", ".", "..") for p in file_parts):
        raise _bad_spec(spec, "the file path has an empty, '.' or '..' part")
    filename = "/".join(file_parts)
    if not filename.endswith(".gguf") or file_parts[-1].startswith("."):
        raise _bad_spec(spec, "the file must be a .gguf file")
    repo = f"{owner}/{repo_name}"
    rev = revision if sep else "main"
    name = f"{HF_PREFIX}{repo}/{filename}" + (f"@{rev}" if sep else "")
    return ModelSpec(name=name, kind="unknown", repo=repo, filename=filename, revision=rev)


def resolve_spec(spec: str) -> ModelSpec:
    """A catalog name or an ``hf:`` spec, as a :class:`ModelSpec`."""
    spec = spec.strip()
    return parse_hf_spec(spec) if spec.startswith(HF_PREFIX) else get_model(spec)


def is_sha256(value: str) -> bool:
    return _SHA256.fullmatch(value) is not None


def _bad_spec(spec: str, why: str) -> Exception:
    return usage_error(
        f"Cannot read model spec {spec!r}: {why}.",
        hint="Write it as hf:OWNER/REPO/FILE.gguf or hf:OWNER/REPO/FILE.gguf@REVISION, "
        "e.g. hf:Qwen/Qwen2.5-0.5B-Instruct-GGUF/qwen2.5-0.5b-instruct-q4_k_m.gguf",
    )
