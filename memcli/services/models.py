"""`memcli models`: what is installed, what can be pulled, and bringing a model in. No store needed."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from memcli.models.convert import ConvertedModel
from memcli.models.pull import PulledModel

if TYPE_CHECKING:
    from memcli.config import Settings
    from memcli.paths import Paths

__all__ = ["ConvertedModel", "InstalledModel", "ModelsListing", "PulledModel", "RecommendedModel"]

DEFAULT_EMBEDDING_FILE = "all-MiniLM-L6-v2.gguf"


@dataclass(frozen=True)
class InstalledModel:
    name: str
    path: str
    size_bytes: int
    in_use: str  # "embedding", "chat" or ""
    origin: str  # "models folder" or "pip package NAME"

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "path": self.path, "size_bytes": self.size_bytes, "installed": True, "in_use": self.in_use, "from": self.origin}


@dataclass(frozen=True)
class RecommendedModel:
    name: str
    kind: str
    file: str
    size_bytes: int | None
    installed: bool
    description: str

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass(frozen=True)
class ModelsListing:
    models_dir: str
    installed: tuple[InstalledModel, ...]
    recommended: tuple[RecommendedModel, ...]

    def to_json(self) -> dict[str, Any]:
        return {
            "models_dir": self.models_dir,
            "installed": [m.to_json() for m in self.installed],
            "recommended": [m.to_json() for m in self.recommended],
        }


def list_models(paths: Paths, settings: Settings) -> ModelsListing:
    from memcli.models.catalog import CATALOG
    from memcli.models.starter import STARTER_FILE, STARTER_PIP_NAME, starter_path

    embedding, chat = settings.embedding.model, settings.chat.model
    files = sorted(paths.models_dir.glob("*.gguf")) if paths.models_dir.exists() else []
    starter = starter_path()
    if starter is not None:
        files.append(starter)  # lives in its pip package, not in the models folder

    def in_use(p: Path) -> str:
        if (embedding in (p.name, str(p))) or (not embedding and p.name == DEFAULT_EMBEDDING_FILE):
            return "embedding"
        if (chat and chat in (p.name, str(p))) or (not chat and p.name == STARTER_FILE):
            return "chat" if settings.chat.backend == "llama" else ""
        return ""

    installed = tuple(
        InstalledModel(
            p.name, str(p), p.stat().st_size, in_use(p), f"pip package {STARTER_PIP_NAME}" if p == starter else "models folder"
        )
        for p in files
    )
    names = {p.name for p in files}
    recommended = tuple(
        RecommendedModel(m.name, m.kind, m.local_name, m.size_bytes, m.local_name in names, m.description) for m in CATALOG
    )
    return ModelsListing(str(paths.models_dir), installed, recommended)


def import_checkpoint(paths: Paths, src: Path, name: str | None = None) -> ConvertedModel:
    """Convert a local BERT-family checkpoint into DATA/models/NAME.gguf (default: the folder's name)."""
    from memcli.models.convert import convert_bert
    from memcli.paths import ensure_private_dir

    ensure_private_dir(paths.models_dir)
    model_name = name or src.resolve().name
    return convert_bert(src, paths.models_dir / f"{model_name}.gguf", name=model_name)


def pull(paths: Paths, name: str, progress: Callable[[int, int | None], None] | None = None) -> PulledModel:
    """Download a recommended model or ``hf:OWNER/REPO/FILE.gguf`` into the models folder."""
    from memcli.models.pull import pull as do_pull

    return do_pull(name, paths.models_dir, progress=progress)
