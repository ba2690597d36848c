"""memcli's Python API: what the CLI, the benchmarks and other programs call.

    from memcli.api import Memcli

    mem = Memcli()                       # the user's store; Memcli(home="/tmp/x") for a separate one
    mem.add("Pickle's vet said: ten days of rest", tags=["dog"])
    for hit in mem.recall("what did the vet say?").hits:
        print(hit.rank, hit.memory.text)

Every method returns a typed, frozen record (``memcli.records``) and raises ``MemcliFailure`` (with a
hint) for expected failures. Nothing here prints.
"""

from __future__ import annotations

import builtins
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path
from typing import IO, TYPE_CHECKING

from memcli.context import Context
from memcli.paths import Paths
from memcli.records import AddResult, ForgetResult, Kind, Memory, Page, RecallResult, Stats

if TYPE_CHECKING:  # the result types, re-exported: callers (the CLI too) import them from here
    from memcli.backends.base import ChatModel as ChatModel
    from memcli.services.budget import OverBudget as OverBudget
    from memcli.services.chat import ChatSession as ChatSession
    from memcli.services.chat import TurnResult as TurnResult
    from memcli.services.consolidate import ConsolidateReport as ConsolidateReport
    from memcli.services.doctor import DoctorReport as DoctorReport
    from memcli.services.history import MemoryHistory as MemoryHistory
    from memcli.services.ingest import IngestProgress as IngestProgress
    from memcli.services.ingest import IngestReport as IngestReport
    from memcli.services.migrate import MigrateResult as MigrateResult
    from memcli.services.models import ConvertedModel as ConvertedModel
    from memcli.services.models import ModelsListing as ModelsListing
    from memcli.services.models import PulledModel as PulledModel
    from memcli.services.profile import Profile as Profile
    from memcli.services.prune import PrunePlan as PrunePlan
    from memcli.services.prune import PruneResult as PruneResult
    from memcli.services.reindex import ReindexResult as ReindexResult
    from memcli.services.review import Decision as Decision
    from memcli.services.review import PendingFact as PendingFact
    from memcli.services.review import ReviewList as ReviewList
    from memcli.services.review import ReviewResult as ReviewResult
    from memcli.services.transfer import ExportResult as ExportResult
    from memcli.services.transfer import ImportResult as ImportResult


class Memcli:
    def __init__(
        self,
        home: str | Path | None = None,
        *,
        space: str | None = None,
        settings: dict[tuple[str, str], object] | None = None,
        env: dict[str, str] | None = None,
    ) -> None:
        """Open memcli's state: ``home`` works like ``MEMCLI_HOME``; ``settings`` overrides config
        keys as {(section, key): value}, like command-line flags do."""
        import os

        env = dict(os.environ) if env is None else dict(env)
        if home is not None:
            env["MEMCLI_HOME"] = str(home)
        overrides = dict(settings or {})
        if space is not None:
            overrides[("store", "space")] = space
        self._ctx = Context(Paths.resolve(env), env=env, overrides=overrides)

    @property
    def notices(self) -> list[str]:
        """Things worth telling the user (a model converted, interrupted writes completed)."""
        return self._ctx.notices

    def listen(self, *, on_wait: Callable[[], None] | None = None, on_notice: Callable[[str], None] | None = None) -> None:
        """``on_wait``: told when a write must wait for another memcli process; ``on_notice``: told each
        notice as it happens (instead of collecting it in :attr:`notices`)."""
        self._ctx.on_wait = on_wait
        self._ctx.on_notice = on_notice

    @property
    def data_dir(self) -> Path:
        """Where this store's files live (owner-only)."""
        return self._ctx.paths.data_dir

    @property
    def config_file(self) -> Path:
        """The user's config file (it may not exist yet)."""
        return self._ctx.paths.config_file

    def add(
        self,
        text: str,
        *,
        kind: Kind = Kind.NOTE,
        tags: Sequence[str] = (),
        pinned: bool = False,
        when: datetime | None = None,
        space: str | None = None,
        source: str = "api",
    ) -> AddResult:
        from memcli.services import memories as _memories

        return _memories.add(self._ctx, text, kind=kind, tags=tags, pinned=pinned, when=when, space=space, source=source)

    def recall(
        self,
        query: str,
        *,
        k: int | None = None,
        kinds: Sequence[Kind] = (),
        tags: Sequence[str] = (),
        since: datetime | None = None,
        until: datetime | None = None,
        now: datetime | None = None,
        space: str | None = None,
        context: int = 0,
        time_aware: bool = True,
        touch: bool = True,
        as_of: datetime | None = None,
        links: int = 0,
    ) -> RecallResult:
        """Hybrid recall. ``now`` is the reference time for relative expressions and recency;
        ``context`` adds that many neighbours (same document/conversation) to each hit;
        ``time_aware`` reads time expressions in the query; ``touch`` counts the recall;
        ``as_of`` answers with what was true at that time (default: what is true now)."""
        from memcli.services import recall as _recall

        return _recall.recall(
            self._ctx,
            query,
            k=k,
            kinds=kinds,
            tags=tags,
            since=since,
            until=until,
            now=now,
            space=space,
            context=context,
            time_aware=time_aware,
            touch=touch,
            as_of=as_of,
            links=links,
        )

    def chat(
        self,
        model: ChatModel | str | None = None,
        *,
        remember: bool = True,
        system: str | None = None,
        space: str | None = None,
    ) -> ChatSession:
        """A chat session grounded in memory. ``model``: a ChatModel, a GGUF path / model name, or None
        for the configured one. ``remember=False`` is incognito: nothing from the session is stored.
        One call per turn: ``session.ask(message)``, or ``session.turn(message, on_token=...)`` to
        stream the reply. Call ``session.close()`` at the end: it finishes learning from the conversation."""
        from memcli.services.chat import ChatSession

        llm = model if model is not None and not isinstance(model, str) else self._ctx.load_chat_model(model)
        return ChatSession(self._ctx, llm, space=space, remember=remember, system=system)

    def review(self, *, space: str | None = None) -> ReviewList:
        """Facts chat learned that wait for review (``[chat] review = true``), oldest first: not
        recalled, not shown to the model, replacing nothing until approved."""
        from memcli.services import review as _review

        return _review.pending(self._ctx, space)

    def approve(self, refs: Sequence[str] = (), *, every: bool = False, space: str | None = None) -> ReviewResult:
        """Make pending facts (by id, or ``every`` one of ``space``) memories, retiring what each replaces."""
        from memcli.services import review as _review

        return _review.approve(self._ctx, refs, every=every, space=space)

    def reject(self, refs: Sequence[str] = (), *, every: bool = False, space: str | None = None) -> ReviewResult:
        """Drop pending facts: their text is deleted and the same words do not teach them again."""
        from memcli.services import review as _review

        return _review.reject(self._ctx, refs, every=every, space=space)

    def edit_pending(self, ref: str, text: str) -> ReviewResult:
        """Approve a pending fact in your own words (re-embedded); the learned wording is not proposed again."""
        from memcli.services import review as _review

        return _review.edit(self._ctx, ref, text)

    def show(self, ref: str) -> Memory:
        from memcli.services import memories as _memories

        return _memories.show(self._ctx, ref)

    def list(
        self,
        *,
        kinds: Sequence[Kind] = (),
        tags: Sequence[str] = (),
        since: datetime | None = None,
        until: datetime | None = None,
        trash: bool = False,
        limit: int = 20,
        offset: int = 0,
        space: str | None = None,
    ) -> Page:
        from memcli.services import memories as _memories

        return _memories.list_memories(
            self._ctx, space=space, kinds=kinds, tags=tags, since=since, until=until, trash=trash, limit=limit, offset=offset
        )

    def forget(
        self,
        refs: Sequence[str] = (),
        *,
        query: str | None = None,
        k: int = 5,
        purge: bool = False,
        dry_run: bool = False,
        space: str | None = None,
    ) -> ForgetResult:
        from memcli.services import memories as _memories

        return _memories.forget(self._ctx, refs, query=query, k=k, space=space, purge=purge, dry_run=dry_run)

    def restore(self, refs: Sequence[str]) -> builtins.list[Memory]:
        from memcli.services import memories as _memories

        return _memories.restore(self._ctx, refs)

    def stats(self, *, space: str | None = None) -> Stats:
        from memcli.services import memories as _memories

        return _memories.stats(self._ctx, space)

    def profile(self, *, space: str | None = None) -> Profile:
        """The user's profile: the short text about them that every chat prompt carries (written by
        ``consolidate``; until then their most important current facts)."""
        from memcli.services import profile as _profile

        return _profile.profile(self._ctx, space)

    def ingest(
        self,
        paths: Sequence[str | Path],
        *,
        space: str | None = None,
        fmt: str = "auto",
        include: Sequence[str] = (),
        exclude: Sequence[str] = (),
        stdin: bytes | None = None,
        stdin_name: str | None = None,
        prune_missing: bool = False,
        dry_run: bool = False,
        progress: Callable[[IngestProgress], None] | None = None,
    ) -> IngestReport:
        """Ingest files/directories (Markdown, text, JSONL, Org-mode, HTML, ChatGPT/Claude exports;
        Obsidian/Logseq wikilinks become links) and optionally ``stdin`` bytes. ``progress`` is told
        where the run is (an ``IngestProgress``: files read, then memories and messages embedded)."""
        from memcli.services import ingest as _ingest

        return _ingest.ingest(
            self._ctx,
            [Path(p) for p in paths],
            space=space,
            fmt=fmt,
            include=include,
            exclude=exclude,
            stdin=stdin,
            stdin_name=stdin_name,
            prune_missing=prune_missing,
            dry_run=dry_run,
            progress=progress,
        )

    def reindex(self, progress: Callable[[int, int], None] | None = None, *, model: str | None = None) -> ReindexResult:
        """Re-embed every memory with the configured model, or move the store to ``model`` (recorded
        in the user's config file)."""
        from memcli.services import reindex as _reindex

        return _reindex.reindex(self._ctx, progress, model=model)

    def doctor(self, *, repair: bool = False) -> DoctorReport:
        """Check that catalog, keyword index and vector index agree; ``repair`` rebuilds from the catalog."""
        from memcli.services import doctor as _doctor

        return _doctor.doctor(self._ctx, repair=repair)

    def close(self) -> None:
        self._ctx.close()

    def consolidate(
        self,
        *,
        space: str | None = None,
        model: ChatModel | str | None = None,
        use_llm: bool = True,
        dry_run: bool = False,
        since: datetime | None = None,
        wait: bool = False,
        now: datetime | None = None,
        force: bool = False,
    ) -> ConsolidateReport:
        """Deduplicate, reconcile, summarise, update the profile, link, report decay (``memcli consolidate``).
        ``model``: a ChatModel, a GGUF path / model name, or None for the configured one (the LLM steps
        are skipped, and the report says so, when there is none or ``use_llm`` is False). ``since``:
        only what changed since then (default: since the last run). ``dry_run``: report, change nothing.
        A step that would take the run over the change budget (``[lifecycle] max_change_fraction``)
        takes nothing out and ``report.over_budget`` says so, unless ``force``; ``report.no_effect``: the
        run's writes were accepted and none of them shows in the store. Check both.
        Raises MemcliFailure (ExitCode.BUSY) if another consolidate holds the lock, unless ``wait``."""
        from memcli.services import consolidate as _consolidate

        return _consolidate.consolidate(
            self._ctx, space=space, model=model, use_llm=use_llm, dry_run=dry_run, since=since, wait=wait, now=now,
            force=force,
        )  # fmt: skip

    def prune(
        self,
        *,
        space: str | None = None,
        kinds: Sequence[Kind] = (),
        older_than: float | None = None,
        threshold: float | None = None,
        now: datetime | None = None,
        apply: bool = False,
        purge: bool = False,
        force: bool = False,
    ) -> PruneResult:
        """Faded memories (retention below ``[lifecycle] prune_threshold``, or ``threshold``) and trash
        older than ``[lifecycle] trash_max_age_days``. Without ``apply`` only the plan (``result.plan``);
        with it, faded memories go to the trash (erased with ``purge``) and old trash is erased. Only
        ``kinds`` fade, by default ``[lifecycle] prune_kinds`` (conversation turns and summaries). Pinned,
        profile, recently recalled and retired memories are never pruned. ``older_than``: only memories
        not recalled or recorded in that many days. Applying raises MemcliFailure with
        ExitCode.OVER_BUDGET (nothing changed) beyond the change budget unless ``force``, and with
        ExitCode.NO_EFFECT when none of the planned changes shows in the store."""
        from memcli.services import prune as _prune

        return _prune.prune(
            self._ctx, space=space, kinds=kinds, older_than=older_than, threshold=threshold, now=now, apply=apply,
            purge=purge, force=force,
        )  # fmt: skip

    def apply_prune(self, plan: PrunePlan, *, purge: bool = False, force: bool = False) -> PruneResult:
        """Carry out a plan from :meth:`prune` (after showing it); memories changed since are skipped.
        Over the change budget it raises (ExitCode.OVER_BUDGET, nothing changed) unless ``force``."""
        from memcli.services import prune as _prune

        return _prune.apply_prune(self._ctx, plan, purge=purge, force=force)

    def history(self, ref: str) -> MemoryHistory:
        """A memory's audit log, links and temporal fields (also for a purged id: its audit entries)."""
        from memcli.services import history as _history

        return _history.history(self._ctx, ref)

    def export(
        self,
        dest: str | Path | IO[str] | None,
        *,
        space: str | None = None,
        trash: bool = True,
        markdown: str | Path | None = None,
    ) -> ExportResult:
        """Write every memory (all fields, embeddings, links, audit, sources) as versioned JSONL to
        ``dest`` (a path, written atomically and owner-only, or a text stream); ``markdown``: also a
        readable tree DIR/SPACE/KIND.md. ``space`` None exports every space. Format: README."""
        from memcli.services import transfer as _transfer

        target = Path(dest) if isinstance(dest, str) else dest
        return _transfer.export(
            self._ctx, target, space=space, trash=trash, markdown=Path(markdown) if markdown is not None else None
        )

    def migrate(self, *, to_url: str | None = None, from_url: str | None = None) -> MigrateResult:
        """Move this machine's embedded store to the Chroma server at ``to_url``, or the one at
        ``from_url`` into the embedded store (lossless; the target must be empty, the source is kept)."""
        from memcli.services import migrate as _migrate

        return _migrate.migrate(self._ctx, to_url=to_url, from_url=from_url)

    def import_(self, source: str | Path | bytes, *, name: str | None = None) -> ImportResult:
        """Import a file written by :meth:`export` (a path, or its bytes). Ids are kept; ids already in
        the store are skipped; embeddings are reused when the model matches the store's, re-computed
        otherwise. The whole file is checked first: a malformed one imports nothing."""
        from memcli.services import transfer as _transfer

        return _transfer.import_(self._ctx, Path(source) if isinstance(source, str) else source, name=name)


# -- what needs no store ----------------------------------------------------------------------------
def parse_time(value: str, now: datetime | None = None) -> datetime:
    """A point in time in the words `--since/--until/--when` accept (ISO dates, 'yesterday', '3 weeks
    ago', ...); raises a usage failure listing the forms."""
    from memcli.text.when import parse_when

    return parse_when(value, now)


def parse_kind(value: str) -> Kind:
    """A memory kind by name; raises a usage failure listing the kinds."""
    from memcli.services.memories import parse_kind as parse

    return parse(value)


def settings(env: dict[str, str] | None = None) -> Sequence[tuple[str, str, object, str]]:
    """Every setting as (section, key, effective value, where it came from)."""
    from memcli import config

    return config.load(Paths.resolve(env).config_file).items()


def locations(env: dict[str, str] | None = None) -> builtins.list[tuple[str, Path]]:
    """Where the config file, data, models and logs live (MEMCLI_HOME moves them all)."""
    p = Paths.resolve(env)
    return [("config", p.config_file), ("data", p.data_dir), ("models", p.models_dir), ("logs", p.log_dir)]


def models(env: dict[str, str] | None = None) -> ModelsListing:
    """Installed GGUF models (and which is in use) and the recommended ones that can be pulled."""
    from memcli import config
    from memcli.services import models as _models

    paths = Paths.resolve(env)
    return _models.list_models(paths, config.load(paths.config_file))


def import_model(src: Path, *, name: str | None = None, env: dict[str, str] | None = None) -> ConvertedModel:
    """Convert a local BERT-family checkpoint into a GGUF embedding model in the models folder."""
    from memcli.services import models as _models

    return _models.import_checkpoint(Paths.resolve(env), src, name)


def pull_model(
    name: str, *, progress: Callable[[int, int | None], None] | None = None, env: dict[str, str] | None = None
) -> PulledModel:
    """Download a recommended model (or ``hf:OWNER/REPO/FILE.gguf``): the only call that uses the network."""
    from memcli.services import models as _models

    return _models.pull(Paths.resolve(env), name, progress)
