"""What the consolidate steps share: the run's state (``Run``), a step's tally (``Step``), its change feed
(``Feed``), the pool of current memories a step compares against (``Pool``), and the text rules that
say when two memories are the same."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

import numpy as np
import numpy.typing as npt

from memcli.backends.base import ChatMessage, ChatModel
from memcli.context import Context
from memcli.errors import config_error
from memcli.prompts import consolidate as prompts
from memcli.records import Kind, Memory, ts
from memcli.services.budget import ChangeBudget, OverBudget
from memcli.services.extract import ask_json
from memcli.store import NewMemory, embed_input
from memcli.store.consolidation import ConsolidationStore, Intent

SOURCE = "consolidate"  # source prefix of the memories consolidate writes (consolidate:daily, ...)
ADDED = ("add", "restore")  # audit actions that bring a memory (back) into the store
EXAMPLES = 5  # examples a step report keeps

Matrix = npt.NDArray[np.float32]


@dataclass
class Step:
    """What a step has done so far (frozen into a StepReport at the end)."""

    counts: dict[str, int] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)
    examples: list[str] = field(default_factory=list)
    calls: int = 0
    status: str = "done"
    reason: str = ""
    writes: int = 0  # changes made and seen in the store when read back
    unconfirmed: int = 0  # changes the store accepted that reading back does not show

    def add(self, key: str, n: int = 1) -> None:
        self.counts[key] = self.counts.get(key, 0) + n

    def confirm(self, ok: bool, what: str) -> bool:
        """Count a change the step made, as read back from the store: one that does not show is a failure
        (and the step holds its cursor back, so the change is tried again next run)."""
        if ok:
            self.writes += 1
        else:
            self.unconfirmed += 1
            self.failures.append(f"{what}: the store accepted the change but reading it back does not show it")
        return ok

    def example(self, text: str) -> None:
        if len(self.examples) < EXAMPLES:
            self.examples.append(text)


@dataclass(frozen=True)
class Pool:
    mems: list[Memory]
    vecs: Matrix  # one L2-normalised row per memory: dot product = cosine similarity
    row: dict[str, int] = field(default_factory=dict)
    same: dict[str, set[int]] = field(default_factory=dict)  # normalised text -> rows

    def __post_init__(self) -> None:
        self.row.update({m.id: i for i, m in enumerate(self.mems)})
        for i, m in enumerate(self.mems):
            self.same.setdefault(norm(m.text), set()).add(i)


class Run:
    """One consolidate run: its settings, the model it may ask, and the store in consolidate's words."""

    def __init__(
        self, ctx: Context, space: str, dry_run: bool, since: datetime | None, now: datetime, *, force: bool = False
    ) -> None:
        self.ctx, self.space, self.dry_run, self.now, self.force = ctx, space, dry_run, now, force
        self.since_ts = since.timestamp() if since is not None else None
        self.cfg = ctx.settings.consolidate
        self.store = ctx.store
        self.cat = self.store.catalog
        self.data = ConsolidationStore(self.store)
        self.model: ChatModel | None = None
        self.loaded_model: ChatModel | None = None  # loaded here, so closed here
        self.calls = 0
        self.budget = ChangeBudget.of(ctx, space)
        self.taken_out = 0  # memories the steps have taken out so far (within the budget)
        self.over: OverBudget | None = None  # the step that hit the budget: nothing more is taken out
        self.forced = False  # --force let the run go over the budget
        for key in ("dedupe_kinds", "link_kinds"):
            bad = [k for k in getattr(self.cfg, key) if k not in {x.value for x in Kind}]
            if bad:
                raise config_error(
                    f"[consolidate] {key} has unknown kinds: {', '.join(bad)}",
                    hint=f"Use some of: {', '.join(k.value for k in Kind)}.",
                )

    def since_label(self) -> str:
        if self.since_ts is not None:
            return str(ts(datetime.fromtimestamp(self.since_ts).astimezone()))
        last = self.cat.meta(f"consolidate:{self.space}:last_run")
        return f"last run ({json.loads(last)['started_at']})" if last else "everything"

    def pool(self, kind: str, *, owned_ok: bool) -> Pool:
        """Every active, current memory of ``kind`` with its vector (the catalog is the truth: no ANN misses)."""
        # Sources ingest keeps in sync (a file, a named stdin): their memories are its to change.
        owned = set() if owned_ok else set(self.cat.source_names(self.space))
        mems, vecs = [], []
        for m, blob in self.data.current_with_vectors(self.space, kind):
            if m.source in owned or m.source.split("#", 1)[0] in owned:
                continue
            mems.append(m)
            vecs.append(np.frombuffer(blob, dtype=np.float32))
        return Pool(mems, np.vstack(vecs) if vecs else np.zeros((0, 1), dtype=np.float32))

    def take_out(self, st: Step, step: str, n: int, what: str) -> bool:
        """May ``step`` take ``n`` memories out of the space (``what``: in words)? All or nothing: False
        means it applies none of them, leaves its cursor where it was (the same work is found next run)
        and its status says why. Once a step has hit the budget, no later step takes anything out."""
        if n == 0:
            return True
        over = self.over or self.budget.check(step, n, what, before=self.taken_out)
        if over is not None and self.force:
            self.forced = True
        elif over is not None:
            first = self.over is None
            self.over = over
            st.status = "over budget"
            st.reason = over.message if first else f"the run is over its change budget ({over.step}): nothing taken out"
            st.add("held_back", n)
            return False
        self.taken_out += n
        return True

    def landed(self, *, present: Sequence[str] = (), gone: Sequence[str] = ()) -> bool:
        """Read a change back: is each of ``present`` active and current, and none of ``gone``?"""
        got = self.cat.by_ids([*present, *gone])

        def live(i: str) -> bool:
            m = got.get(i)
            return m is not None and m.state == "active" and m.current

        return all(live(i) for i in present) and not any(live(i) for i in gone)

    def duplicate(self, a: Memory, b: Memory, similarity: float) -> bool:
        """The same words after normalising (case, punctuation, spacing: whatever the embedding says), or
        near-identical embeddings and texts."""
        if norm(a.text) == norm(b.text):
            return True
        return similarity >= self.cfg.duplicate_similarity and same_text(a.text, b.text, self.cfg.duplicate_jaccard)

    def can_call(self) -> bool:
        return self.cfg.max_llm_calls <= 0 or self.calls < self.cfg.max_llm_calls

    def ask(
        self, st: Step, step: str, prompt: str, schema: dict[str, Any], source: str, max_tokens: int
    ) -> dict[str, Any] | None:
        """One validated LLM answer, or None (it was quarantined and the failure recorded)."""
        assert self.model is not None
        self.calls += 1
        st.calls += 1
        messages = [ChatMessage("system", prompts.SYSTEM), ChatMessage("user", prompt)]
        try:
            return ask_json(
                self.ctx, self.model, messages, schema, operation=f"consolidate:{step}", source=source, max_tokens=max_tokens
            )
        except ValueError as e:
            st.failures.append(f"{source}: {e}")
            return None

    def write(
        self, item: NewMemory, *, links: Sequence[tuple[str, str]], replaces: Sequence[tuple[str, str]], note: dict[str, Any]
    ) -> str:
        """Add a memory, then link it and retire (or trash) what it replaces — completed by the next run
        if this one dies in between (the store's intents)."""
        emb = self.ctx.embedder
        vector = emb.embed_documents([embed_input(item.text, item.keys)])[0]
        intent = Intent.new(self.space, item.text, links=links, replaces=replaces, note=note)
        self.data.write_intent(intent)
        [mid] = self.store.add(self.space, [(item, vector)], emb.model_id)
        self.data.complete_intent(intent, mid)
        return mid


class Feed:
    """A step's change feed: memories the audit log shows changed after the step's cursor."""

    def __init__(self, run: Run, step: str) -> None:
        self.run, self.step = run, step
        self.key = f"consolidate:{run.space}:{step}"
        raw = run.cat.meta(self.key)
        old = json.loads(raw) if raw else {"seq": 0, "at": 0.0}
        self.cursor, self.cursor_at = int(old["seq"]), float(old["at"])
        self.at = time.time()
        self.hi = run.data.audit_high_water()
        self.hold: int | None = None  # lowest seq that must be fed again (failed or not yet possible)

    def items(
        self, kinds: Sequence[str], *, actions: Sequence[str] | None = ADDED, active_only: bool = True
    ) -> list[tuple[int, Memory]]:
        """(latest seq, memory) of memories of ``kinds`` changed in (cursor, hi], oldest change first."""
        return self.run.data.changed(
            self.run.space, kinds, upto=self.hi, after=(self.cursor, self.cursor_at), since=self.run.since_ts,
            actions=actions, active_only=active_only,
        )  # fmt: skip

    def defer(self, seq: int) -> None:
        self.hold = seq if self.hold is None else min(self.hold, seq)

    def commit(self, upto: int | None = None) -> None:
        """Everything fed up to ``upto`` (default: the whole feed) is done, except what was deferred."""
        if self.run.dry_run:
            return
        with self.run.cat.transaction() as db:
            self.save(db, self.hi if upto is None else upto)

    def save(self, db: Any, seq: int) -> None:
        """Move the cursor to ``seq`` inside the caller's transaction (with the work it stands for)."""
        if self.hold is not None:
            seq = min(seq, self.hold - 1)
        # After a --since run the cursor may only move if the window covered everything since it.
        if seq <= self.cursor or (self.run.since_ts is not None and self.run.since_ts > self.cursor_at):
            return
        self.run.cat.set_meta(db, self.key, json.dumps({"seq": seq, "at": self.at}))
        self.cursor = seq


# -- text and time rules ---------------------------------------------------------------------------
_WORD = re.compile(r"\w+")


def norm(text: str) -> str:
    """Lower-case words only: the text with case, punctuation and spacing gone."""
    return " ".join(_WORD.findall(text.lower()))


def _names(text: str) -> set[str]:
    """Capitalised words not at the start of a sentence: names, places (lower-cased)."""
    out = set()
    for m in _WORD.finditer(text):
        before = text[: m.start()].rstrip()
        if m.group()[0].isupper() and before and before[-1] not in ".!?:;\"'(":
            out.add(m.group().lower())
    return out


def same_text(a: str, b: str, jaccard: float) -> bool:
    """Do two texts say the same thing in (nearly) the same words? Same words after normalising, or a
    word-set Jaccard of at least ``jaccard`` where no differing word is a number or a name ("gate 12"
    vs "gate 14", "Bergen" vs "Oslo" are different facts however close their embeddings)."""
    if norm(a) == norm(b):
        return True
    wa, wb = set(_WORD.findall(a.lower())), set(_WORD.findall(b.lower()))
    if not wa or not wb or len(wa & wb) / len(wa | wb) < jaccard:
        return False
    diff = wa ^ wb
    return not any(any(c.isdigit() for c in w) for w in diff) and not diff & (_names(a) | _names(b))


def became_true(m: Memory) -> float:
    """When a memory became true: valid_from, else its time (event time, else when it was learned)."""
    return (m.valid_from or m.when).timestamp()


def local_day(t: float) -> date:
    return datetime.fromtimestamp(t).astimezone().date()
