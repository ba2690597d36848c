"""Where memcli keeps things.

Defaults follow the platform's conventions (platformdirs). ``MEMCLI_HOME`` moves *all* state (config,
data, models, logs) under one directory; tests and throwaway experiments use it. Every directory we
create is owner-only (0700): it holds a private life.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path

APP = "memcli"


@dataclass(frozen=True)
class Paths:
    config_file: Path
    data_dir: Path
    models_dir: Path
    log_dir: Path

    @property
    def db_file(self) -> Path:
        return self.data_dir / "memcli.sqlite3"

    @property
    def chroma_dir(self) -> Path:
        return self.data_dir / "chroma"

    @classmethod
    def resolve(cls, env: dict[str, str] | None = None) -> Paths:
        env = dict(os.environ) if env is None else env
        home = env.get("MEMCLI_HOME")
        if home:
            root = Path(home).expanduser().absolute()
            return cls(root / "config.toml", root / "data", root / "models", root / "logs")
        import platformdirs

        dirs = platformdirs.PlatformDirs(APP, appauthor=False)
        return cls(
            Path(dirs.user_config_dir) / "config.toml",
            Path(dirs.user_data_dir),
            Path(dirs.user_data_dir) / "models",
            Path(dirs.user_log_dir),
        )


def ensure_private_dir(path: Path) -> Path:
    """Create ``path`` (and parents we create) owner-only; tighten it if we created it looser."""
    missing = [p for p in (path, *path.parents) if not p.exists()]
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    for p in missing:
        os.chmod(p, 0o700)
    return path


def readable_by_others(path: Path) -> bool:
    """True when group or world can read ``path`` (we warn about it rather than change it silently)."""
    try:
        mode = path.stat().st_mode
    except OSError:
        return False
    return bool(mode & (stat.S_IRGRP | stat.S_IROTH))
