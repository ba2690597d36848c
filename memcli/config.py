"""Settings: the annotated defaults in ``config/default.toml``, the user's file, env vars, flags.

The shipped default file *is* the schema: a key it does not have is unknown, and a value must have the
type of its default. The typed dataclasses below have no defaults of their own, so they cannot drift
from the file (constructing them from the file would fail).
"""

from __future__ import annotations

import os
import re
import tomllib
from dataclasses import dataclass, fields
from importlib import resources
from pathlib import Path
from typing import Any

from memcli.errors import config_error

Value = str | int | float | bool | list[str]


@dataclass(frozen=True)
class StoreSettings:
    space: str
    url: str
    tenant: str
    database: str
    token_file: str
    token_header: str
    timeout_s: float


@dataclass(frozen=True)
class EmbeddingSettings:
    model: str
    n_threads: int
    n_gpu_layers: int
    n_ctx: int
    max_tokens: int
    query_prefix: str
    document_prefix: str


@dataclass(frozen=True)
class RecallSettings:
    k: int
    candidates: int
    fusion: str
    rrf_k: int
    dense_weight: float
    keyword_weight: float
    min_similarity: float
    recency_weight: float
    recency_half_life_days: float
    keyword_max_docs: int


@dataclass(frozen=True)
class IngestSettings:
    max_file_mb: int
    neighbour_keys: int
    exclude: list[str]


@dataclass(frozen=True)
class ChatSettings:
    backend: str
    model: str
    url: str
    server_model: str
    api_key_env: str
    api_key_file: str
    n_ctx: int
    n_threads: int
    n_gpu_layers: int
    chat_format: str
    sampling: str
    temperature: float
    top_p: float
    repeat_penalty: float
    max_reply_tokens: int
    system: str
    persona: str
    budget_tokens: int
    profile_tokens: int
    memory_tokens: int
    summary_tokens: int
    recall_k: int
    statement_k: int
    memory_need: bool
    extract: bool
    extractor: str
    similar_facts: int
    duplicate_similarity: float
    related_similarity: float
    forget_similarity: float
    review: bool


@dataclass(frozen=True)
class ConsolidateSettings:
    dedupe_kinds: list[str]
    duplicate_similarity: float
    duplicate_jaccard: float
    related_similarity: float
    reconcile_candidates: int
    daily_words: int
    weekly_words: int
    input_tokens: int
    link_kinds: list[str]
    link_similarity: float
    link_max: int
    max_llm_calls: int
    batch_size: int


@dataclass(frozen=True)
class LifecycleSettings:
    strength_note: float
    strength_episode: float
    strength_fact: float
    strength_summary: float
    strength_profile: float
    recall_growth: float
    importance_factor: float
    prune_threshold: float
    protect_recalled_days: float
    trash_max_age_days: float
    retention_weight: float
    prune_kinds: list[str]
    max_change_fraction: float
    max_change_floor: int


@dataclass(frozen=True)
class OutputSettings:
    color: str


SECTIONS: dict[str, type[Any]] = {
    "store": StoreSettings,
    "embedding": EmbeddingSettings,
    "recall": RecallSettings,
    "ingest": IngestSettings,
    "chat": ChatSettings,
    "consolidate": ConsolidateSettings,
    "lifecycle": LifecycleSettings,
    "output": OutputSettings,
}

# Bounds and formats the type alone does not give, for settings read by the store, recall and ingest.
MINIMUMS: dict[tuple[str, str], int] = {
    ("recall", "k"): 1,
    ("recall", "candidates"): 1,
    ("recall", "rrf_k"): 0,
    ("recall", "keyword_max_docs"): 0,
    ("embedding", "n_threads"): 0,
    ("embedding", "n_ctx"): 16,
    ("embedding", "max_tokens"): 0,
    ("ingest", "max_file_mb"): 1,
    ("ingest", "neighbour_keys"): 0,
}
PATTERNS: dict[tuple[str, str], tuple[str, str]] = {
    ("store", "space"): (
        r"[a-z0-9][a-z0-9_-]{0,62}",
        "1-63 characters of a-z, 0-9, '-' and '_', starting with a letter or digit",
    ),
}

CHOICES: dict[tuple[str, str], tuple[str, ...]] = {
    ("output", "color"): ("auto", "always", "never"),
    ("chat", "backend"): ("llama", "openai"),
    ("chat", "sampling"): ("auto", "fixed"),
    ("chat", "extractor"): ("auto", "model", "rules"),
    ("recall", "fusion"): ("learned", "rrf"),
    ("store", "token_header"): ("x-chroma-token", "authorization"),
}


@dataclass(frozen=True)
class Settings:
    store: StoreSettings
    embedding: EmbeddingSettings
    recall: RecallSettings
    ingest: IngestSettings
    chat: ChatSettings
    consolidate: ConsolidateSettings
    lifecycle: LifecycleSettings
    output: OutputSettings
    # (section, key) -> where the effective value came from, for `memcli config show`.
    sources: dict[tuple[str, str], str]
    config_file: Path

    def items(self) -> list[tuple[str, str, Value, str]]:
        out: list[tuple[str, str, Value, str]] = []
        for section in SECTIONS:
            obj = getattr(self, section)
            for f in fields(obj):
                out.append((section, f.name, getattr(obj, f.name), self.sources[(section, f.name)]))
        return out


def default_config_text() -> str:
    """The annotated default config: packaged copy when installed, the repository's otherwise."""
    packaged = resources.files("memcli").joinpath("default.toml")
    if packaged.is_file():
        return packaged.read_text(encoding="utf-8")
    return (Path(__file__).resolve().parent.parent / "config" / "default.toml").read_text(encoding="utf-8")


def _defaults() -> dict[str, dict[str, Value]]:
    return tomllib.loads(default_config_text())


def env_name(section: str, key: str) -> str:
    return f"MEMCLI_{section}_{key}".upper()


def _type_name(v: Value) -> str:
    if isinstance(v, bool):
        return "true or false"
    if isinstance(v, int):
        return "an integer"
    if isinstance(v, float):
        return "a number"
    if isinstance(v, list):
        return "a list of strings"
    return "a string"


def _check(where: str, section: str, key: str, default: Value, value: object) -> Value:
    """Return ``value`` if it has the default's type (ints accepted for floats), else a clear error."""
    ok: bool
    if isinstance(default, bool):
        ok = isinstance(value, bool)
    elif isinstance(default, int):
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif isinstance(default, float):
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        if ok:
            value = float(value)  # type: ignore[arg-type]
    elif isinstance(default, list):
        ok = isinstance(value, list) and all(isinstance(x, str) for x in value)
    else:
        ok = isinstance(value, str)
    if not ok:
        raise config_error(
            f"{where}: [{section}] {key} must be {_type_name(default)}, got {value!r}",
            hint=f"Fix the value, or remove the key to use the default ({default!r}).",
        )
    choices = CHOICES.get((section, key))
    if choices and value not in choices:
        raise config_error(
            f"{where}: [{section}] {key} must be one of {', '.join(choices)}, got {value!r}",
            hint="Fix the value, or remove the key to use the default.",
        )
    # Flags keep their own usage errors (exit 2); a file or variable gets a config error naming it, instead
    # of a later failure that blames a flag (`-k must be at least 1`) or the model (n_ctx) for it.
    low = MINIMUMS.get((section, key))
    if where != "command line" and low is not None and value < low:  # type: ignore[operator]
        raise config_error(
            f"{where}: [{section}] {key} must be at least {low}, got {value!r}",
            hint="Fix the value, or remove the key to use the default.",
        )
    pattern = PATTERNS.get((section, key))
    if where != "command line" and pattern is not None and not re.fullmatch(pattern[0], str(value)):
        raise config_error(
            f"{where}: [{section}] {key} must be {pattern[1]}, got {value!r}",
            hint="Fix the value, or remove the key to use the default.",
        )
    return value  # type: ignore[return-value]


def _parse_env(name: str, default: Value, raw: str) -> object:
    if isinstance(default, bool):
        low = raw.strip().lower()
        if low in ("1", "true", "yes", "on"):
            return True
        if low in ("0", "false", "no", "off"):
            return False
        return raw
    if isinstance(default, (int, float)):
        try:
            return int(raw) if isinstance(default, int) else float(raw)
        except ValueError:
            return raw
    if isinstance(default, list):
        return [x.strip() for x in raw.split(",") if x.strip()]
    return raw


def read_user_file(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    except (OSError, UnicodeDecodeError) as e:
        raise config_error(f"cannot read config file {path}: {e}", hint="Check its permissions and encoding.")
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise config_error(
            f"{path} is not valid TOML: {e}",
            hint="Fix the syntax (see config/default.toml for every key), or move the file away.",
        )


def set_user_value(path: Path, section: str, key: str, value: str) -> None:
    """Set ``[section] key = value`` in the user's config file, keeping everything else in it
    (comments, order, other keys) as it was; the file is created owner-only if it does not exist.
    Written to a temporary file and renamed, so a crash leaves the old file or the new one."""
    import tomlkit

    try:
        text = path.read_text(encoding="utf-8") if path.exists() else ""
        doc = tomlkit.parse(text)
    except (OSError, UnicodeDecodeError, tomlkit.exceptions.ParseError) as e:
        raise config_error(f"cannot update config file {path}: {e}", hint=f"Set [{section}] {key} = {value!r} by hand.")
    table = doc.get(section)
    if table is None:
        table = tomlkit.table()
        doc[section] = table
    table[key] = value
    tmp = path.with_name(path.name + ".tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(tomlkit.dumps(doc))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise config_error(f"cannot write config file {path}: {e}", hint=f"Set [{section}] {key} = {value!r} by hand.")


def load(
    config_file: Path,
    *,
    env: dict[str, str] | None = None,
    overrides: dict[tuple[str, str], object] | None = None,
) -> Settings:
    """Merge defaults < config file < environment < ``overrides`` (command-line flags)."""
    env = dict(os.environ) if env is None else env
    defaults = _defaults()
    values: dict[tuple[str, str], Value] = {}
    sources: dict[tuple[str, str], str] = {}
    for section, keys in defaults.items():
        for key, v in keys.items():
            values[(section, key)] = v
            sources[(section, key)] = "default"

    user = read_user_file(config_file)
    for section, keys in user.items():
        if section not in defaults:
            raise config_error(
                f"{config_file}: unknown section [{section}]",
                hint=f"Known sections: {', '.join(defaults)}.",
            )
        if not isinstance(keys, dict):
            raise config_error(
                f"{config_file}: [{section}] must be a table of settings, got {keys!r}",
                hint=f"Write it as a section: [{section}] on its own line, then key = value lines.",
            )
        for key, v in keys.items():
            if key not in defaults[section]:
                raise config_error(
                    f"{config_file}: unknown key '{key}' in [{section}]",
                    hint=f"Known keys in [{section}]: {', '.join(defaults[section])}.",
                )
            values[(section, key)] = _check(str(config_file), section, key, defaults[section][key], v)
            sources[(section, key)] = f"file {config_file}"

    for section, key in list(values):
        name = env_name(section, key)
        if name in env:
            parsed = _parse_env(name, defaults[section][key], env[name])
            values[(section, key)] = _check(f"environment {name}", section, key, defaults[section][key], parsed)
            sources[(section, key)] = f"env {name}"

    for (section, key), override in (overrides or {}).items():
        if override is None:
            continue
        values[(section, key)] = _check("command line", section, key, defaults[section][key], override)
        sources[(section, key)] = "flag"

    built: dict[str, Any] = {}
    for section, cls in SECTIONS.items():
        built[section] = cls(**{f.name: values[(section, f.name)] for f in fields(cls)})
    return Settings(**built, sources=sources, config_file=config_file)
