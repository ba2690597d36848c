"""Forgetting: the retention curve, its gentle term in recall, `memcli prune` and `memcli history`.

The store and embedder are real. Memories "from the past" are written through the store with an old
recording time, and their recall history (count, last recall) is set in the catalog: the two fields
the retention curve reads.
"""

from __future__ import annotations

import io
import math
import sys
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from storekit import set_columns

from memcli.api import Memcli
from memcli.errors import ExitCode, MemcliFailure
from memcli.records import Kind
from memcli.services import retention as ret
from memcli.store import NewMemory

DAY = 86400.0


def seed(
    mem: Memcli,
    text: str,
    days: float,
    *,
    kind: Kind = Kind.NOTE,
    pinned: bool = False,
    importance: float = 0.5,
    recalls: int = 0,
    recalled_days_ago: float | None = None,
    space: str = "default",
) -> str:
    """A memory recorded ``days`` ago, recalled ``recalls`` times (the last ``recalled_days_ago`` ago)."""
    emb = mem._ctx.embedder
    t = time.time() - days * DAY
    item = NewMemory(text, kind=kind, recorded_at=t, pinned=pinned, importance=importance)
    [mid] = mem._ctx.store.add(space, [(item, emb.embed_documents([text])[0])], emb.model_id)
    if recalls or recalled_days_ago is not None:
        last = None if recalled_days_ago is None else time.time() - recalled_days_ago * DAY
        set_columns(mem, mid, access_count=recalls, last_access=last)
    return mid


def state(mem: Memcli, mid: str) -> str | None:
    m = mem._ctx.store.catalog.by_ids([mid]).get(mid)
    return None if m is None else m.state


def params(**overrides: float) -> ret.RetentionParams:
    from memcli.config import load

    s = load(Path("/nonexistent/config.toml"), env={}, overrides={("lifecycle", k): v for k, v in overrides.items()})
    return ret.RetentionParams.from_settings(s.lifecycle)


class _Opened:
    """A Memcli on the test's home, closed before the CLI (which opens its own) runs."""

    def __enter__(self) -> Memcli:
        self.mem = Memcli()
        return self.mem

    def __exit__(self, *exc: object) -> None:
        self.mem.close()


@pytest.fixture
def tuned(home: Path) -> Iterator[Callable[..., Memcli]]:
    """Memcli instances with [lifecycle]/[recall] overrides, on the test's home; closed at the end."""
    opened: list[Memcli] = []

    def make(**settings: Any) -> Memcli:
        m = Memcli(settings={tuple(k.split("__")): v for k, v in settings.items()})  # type: ignore[misc]
        opened.append(m)
        return m

    yield make
    for m in opened:
        m.close()


# -- the curve ---------------------------------------------------------------------------------------
def test_strength_grows_with_recalls_and_importance_so_strong_memories_fade_slower() -> None:
    p = params()
    s0 = ret.strength(Kind.NOTE, 0, 0.5, p)
    assert s0 == pytest.approx(p.strength_days["note"])
    assert ret.strength(Kind.NOTE, 1, 0.5, p) == pytest.approx(2 * s0)  # recall_growth 1.0
    assert ret.strength(Kind.NOTE, 5, 0.5, p) > ret.strength(Kind.NOTE, 1, 0.5, p)
    assert ret.strength(Kind.NOTE, 0, 0.9, p) > s0 > ret.strength(Kind.NOTE, 0, 0.1, p)
    # The direction MemoryBank's code got backwards: after the same 200 days, the often recalled and
    # the important memory keep MORE.
    t = 200.0
    assert ret.retention(t, ret.strength(Kind.NOTE, 5, 0.5, p)) > ret.retention(t, s0)
    assert ret.retention(t, ret.strength(Kind.NOTE, 0, 1.0, p)) > ret.retention(t, s0)
    assert ret.retention(0.0, s0) == 1.0
    assert ret.retention(3 * s0, s0) == pytest.approx(math.exp(-3))
    assert ret.retention(-5.0, s0) == 1.0  # a memory "from the future" is fresh, not above 1
    assert ret.days_for(0.05, s0) == pytest.approx(-math.log(0.05) * s0)


def test_assess_counts_from_the_last_recall_else_the_recording(mem: Memcli) -> None:
    p = params()
    never = mem._ctx.store.catalog.by_ids([seed(mem, "Never recalled.", 100)])
    recalled = mem._ctx.store.catalog.by_ids([seed(mem, "Recalled once.", 100, recalls=1, recalled_days_ago=10)])
    a = ret.assess(next(iter(never.values())), time.time(), p)
    b = ret.assess(next(iter(recalled.values())), time.time(), p)
    assert a.since == "recorded" and a.age_days == pytest.approx(100, abs=0.01)
    assert b.since == "last recall" and b.age_days == pytest.approx(10, abs=0.01)
    assert b.strength_days == pytest.approx(2 * a.strength_days)
    assert b.score > a.score


def test_per_kind_parameters_come_from_config(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    p = params()
    # Defaults: a chat turn fades faster than a fact, a fact faster than a note.
    assert p.strength_days["episode"] < p.strength_days["fact"] < p.strength_days["note"]
    assert params(strength_episode=3.0, recall_growth=0.5).strength_days["episode"] == 3.0
    assert ret.strength(Kind.EPISODE, 2, 0.5, params(strength_episode=3.0, recall_growth=0.5)) == pytest.approx(6.0)
    from memcli.config import load

    s = load(tmp_path / "none.toml", env={"MEMCLI_LIFECYCLE_STRENGTH_FACT": "42"})
    assert ret.RetentionParams.from_settings(s.lifecycle).strength_days["fact"] == 42.0
    with pytest.raises(MemcliFailure) as e:
        params(strength_fact=0.0)
    assert e.value.code == ExitCode.CONFIG and "strength_fact" in e.value.message
    with pytest.raises(MemcliFailure) as e:
        params(prune_threshold=1.5)
    assert "prune_threshold" in e.value.message


# -- recall ----------------------------------------------------------------------------------------
def test_an_old_exact_match_still_beats_a_fresh_often_recalled_weak_match(mem: Memcli) -> None:
    old = seed(mem, "The locksmith's code for the garage gate is 4471.", 3 * 365)
    fresh = seed(mem, "The garage needs a new light bulb.", 1, recalls=30, recalled_days_ago=0.5)
    for i in range(5):
        seed(mem, f"Unrelated note number {i} about the weather.", 2, recalls=10, recalled_days_ago=1)
    m = mem._ctx.store.catalog.by_ids([old, fresh])
    p = params()
    assert ret.assess(m[old], time.time(), p).score < 0.06 < 0.99 < ret.assess(m[fresh], time.time(), p).score
    hits = mem.recall("what is the locksmith code for the garage gate?", touch=False).hits
    assert hits[0].memory.id == old


def test_retention_adds_a_small_bounded_term_to_the_fused_score(tuned: Callable[..., Memcli]) -> None:
    mem = tuned()
    ids = [
        seed(mem, "Pickle the beagle likes carrots.", 400),
        seed(mem, "Pickle the beagle hates the vacuum cleaner.", 400, recalls=8, recalled_days_ago=2),
        seed(mem, "Pickle the beagle sleeps on the sofa.", 30, recalls=1, recalled_days_ago=20),
    ]
    now = datetime.now(UTC)
    with_term = {h.memory.id: h.score for h in mem.recall("Pickle the beagle", now=now, touch=False).hits}
    rows = mem._ctx.store.catalog.by_ids(ids)
    mem.close()
    without = {
        h.memory.id: h.score
        for h in tuned(lifecycle__retention_weight=0.0).recall("Pickle the beagle", now=now, touch=False).hits
    }
    p = params()
    for mid in ids:
        r = ret.assess(rows[mid], now, p).score
        assert with_term[mid] - without[mid] == pytest.approx(0.001 * r, abs=1e-9)
        assert 0 < with_term[mid] - without[mid] <= 0.001  # bounded: less than any gap between two dense ranks


# -- prune -------------------------------------------------------------------------------------------
def faded_store(mem: Memcli) -> dict[str, str]:
    """One memory of each interesting sort, all long unrecalled; returns name -> id."""
    ids = {
        "plain": seed(mem, "Chatter about the weather last spring.", 400, kind=Kind.EPISODE),
        "plain_fact": seed(mem, "The user once owned a red bicycle.", 2000, kind=Kind.FACT),
        "pinned": seed(mem, "Passport number is in the blue folder.", 3000, pinned=True),
        "profile": seed(mem, "The user is a night owl who likes short answers.", 3000, kind=Kind.PROFILE),
        "young": seed(mem, "The new dentist is on Elm Street.", 2, kind=Kind.EPISODE),
        "strong": seed(mem, "The user's sister is called Liv.", 2000, kind=Kind.FACT, recalls=40, recalled_days_ago=100),
    }
    # Recalled last week, but with so little strength that the curve alone would drop it.
    ids["recent"] = seed(mem, "Ordered a new kettle.", 3000, kind=Kind.EPISODE, importance=0.0, recalls=1, recalled_days_ago=7)
    old_fact = seed(mem, "The user lives in Bergen.", 3000, kind=Kind.FACT)
    new_fact = seed(mem, "The user lives in Oslo.", 1, kind=Kind.FACT)
    mem._ctx.store.retire(
        mem._ctx.store.catalog.by_ids([old_fact])[old_fact], new_fact, valid_until=time.time(), reason="supersede"
    )
    ids["retired"] = old_fact
    return ids


def test_prune_plan_never_includes_pinned_profile_recently_recalled_or_retired(tuned: Callable[..., Memcli]) -> None:
    mem = tuned(lifecycle__strength_episode=1.0)  # so "recent" has faded by the curve and only protection keeps it
    ids = faded_store(mem)
    # By default only conversation turns and summaries fade: the old fact is not offered.
    assert [c.memory.id for c in mem.prune().plan.candidates] == [ids["plain"]]
    result = mem.prune(kinds=[Kind.EPISODE, Kind.FACT, Kind.NOTE, Kind.PROFILE])
    plan = result.plan
    assert not result.applied and state(mem, ids["plain"]) == "active"  # a plan changes nothing
    assert {c.memory.id for c in plan.candidates} == {ids["plain"], ids["plain_fact"]}
    assert plan.protected == {"pinned": 1, "profile": 1, "recently_recalled": 1, "retired": 1}
    first = plan.candidates[0]
    assert first.retention.score < plan.threshold and "never recalled" in first.why
    assert [c.retention.score for c in plan.candidates] == sorted(c.retention.score for c in plan.candidates)
    # Narrowing: only facts; only memories untouched for more than 1000 days.
    assert [c.memory.id for c in mem.prune(kinds=[Kind.FACT]).plan.candidates] == [ids["plain_fact"]]
    assert [c.memory.id for c in mem.prune(kinds=[Kind.FACT, Kind.EPISODE], older_than=1000).plan.candidates] == [
        ids["plain_fact"]
    ]
    done = mem.apply_prune(plan)
    assert set(done.pruned) == {ids["plain"], ids["plain_fact"]} and not done.skipped
    assert state(mem, ids["plain"]) == state(mem, ids["plain_fact"]) == "trashed"
    assert all(state(mem, ids[k]) == "active" for k in ("pinned", "profile", "young", "strong", "recent", "retired"))
    assert mem.history(ids["plain"]).events[-1].detail == {"reason": "prune"}
    mem.restore([ids["plain"]])  # pruned means restorable
    assert state(mem, ids["plain"]) == "active"


def test_apply_skips_a_memory_recalled_or_pinned_after_the_plan(mem: Memcli) -> None:
    a = seed(mem, "An old remark about gutters.", 2000, kind=Kind.EPISODE)
    b = seed(mem, "An old remark about fences.", 2000, kind=Kind.EPISODE)
    plan = mem.prune().plan
    assert {c.memory.id for c in plan.candidates} == {a, b}
    mem._ctx.store.touch([a])
    set_columns(mem, b, pinned=1)
    done = mem.apply_prune(plan)
    assert set(done.skipped) == {a, b} and not done.pruned
    assert state(mem, a) == state(mem, b) == "active"


def test_prune_cli_applies_only_with_yes(cli, home: Path) -> None:  # type: ignore[no-untyped-def]
    with _Opened() as mem:
        old = seed(mem, "Something said long ago about the shed.", 3000, kind=Kind.EPISODE)
        kept = seed(mem, "Fresh news about the shed.", 0)
    plan_only = cli("prune")
    assert plan_only.code == 0
    assert "--yes" in plan_only.err and old[:8] in plan_only.out
    dry = cli("prune", "--dry-run", "--yes", "--json")
    assert dry.code == 0 and dry.json()["data"]["applied"] is False
    assert [c["id"] for c in dry.json()["data"]["candidates"]] == [old]
    assert cli("list", "--trash", "--json").json()["data"]["total"] == 0
    done = cli("prune", "--yes")
    assert done.code == 0 and "moved 1 faded memories to the trash" in done.out
    trash = cli("list", "--trash", "--json").json()["data"]["memories"]
    assert [m["id"] for m in trash] == [old]
    assert cli("show", kept, "--json").json()["data"]["state"] == "active"
    assert "nothing to prune" in cli("prune").err


def test_prune_cli_asks_on_a_terminal(cli, home: Path, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    with _Opened() as mem:
        old = seed(mem, "A long forgotten remark about tea.", 3000, kind=Kind.EPISODE)

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    monkeypatch.setattr(sys, "stdin", Terminal("n\n"))
    declined = cli("prune")
    assert declined.code == 0 and "nothing was changed" in declined.err
    assert cli("show", old, "--json").json()["data"]["state"] == "active"
    monkeypatch.setattr(sys, "stdin", Terminal("y\n"))
    accepted = cli("prune")
    assert accepted.code == 0 and "moved 1" in accepted.out
    assert cli("show", old, "--json").json()["data"]["state"] == "trashed"


def test_prune_purge_erases_instead_of_trashing(cli, home: Path) -> None:  # type: ignore[no-untyped-def]
    with _Opened() as mem:
        old = seed(mem, "An ancient shopping list: flour, eggs.", 3000, kind=Kind.EPISODE)
    r = cli("prune", "--purge", "--yes", "--json")
    assert r.code == 0, r.err
    data = r.json()["data"]
    assert data["purged"] is True and data["pruned"] == [old] and "embedding" in data["removed"]
    assert cli("show", old).code == ExitCode.NOT_FOUND
    assert cli("list", "--trash", "--json").json()["data"]["total"] == 0
    h = cli("history", old, "--json").json()["data"]
    assert h["purged"] is True and [e["action"] for e in h["events"]] == ["purge"]


def test_prune_empties_trash_older_than_the_configured_age(cli, home: Path, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    with _Opened() as mem:
        stale = mem.add("Trashed long ago.").added[0].id
        recent = mem.add("Trashed yesterday.").added[0].id
        mem.forget([stale, recent])
        set_columns(mem, stale, trashed_at=time.time() - 40 * DAY)
        set_columns(mem, recent, trashed_at=time.time() - 1 * DAY)
    monkeypatch.setenv("MEMCLI_LIFECYCLE_TRASH_MAX_AGE_DAYS", "0")  # 0: prune never empties the trash
    assert "nothing to prune" in cli("prune", "--yes").err
    monkeypatch.delenv("MEMCLI_LIFECYCLE_TRASH_MAX_AGE_DAYS")
    plan = cli("prune", "--json").json()["data"]
    assert plan["expired_trash"] == [stale] and plan["candidates"] == []
    r = cli("prune", "--yes")
    assert r.code == 0 and "emptied the trash of 1 memories trashed more than 30 days ago" in r.out
    assert cli("show", stale).code == ExitCode.NOT_FOUND
    assert cli("show", recent, "--json").json()["data"]["state"] == "trashed"


def test_prune_refuses_a_bad_threshold(cli) -> None:  # type: ignore[no-untyped-def]
    r = cli("prune", "--threshold", "2")
    assert r.code == ExitCode.USAGE


# -- history -------------------------------------------------------------------------------------------
def test_history_shows_audit_links_and_temporal_truth(cli, home: Path) -> None:  # type: ignore[no-untyped-def]
    until = datetime(2026, 5, 1, tzinfo=UTC).timestamp()
    with _Opened() as mem:
        bergen = mem.add("The user lives in Bergen.", kind=Kind.FACT).added[0]
        oslo = mem.add("The user lives in Oslo.", kind=Kind.FACT).added[0]
        turn = mem.add("user: we moved to Oslo in May", kind=Kind.EPISODE).added[0]
        mem._ctx.store.retire(bergen, oslo.id, valid_until=until, reason="supersede")
        mem._ctx.store.link(oslo.id, turn.id, "derived_from")
        mem.forget([bergen.id])
        mem.restore([bergen.id])
    r = cli("history", bergen.id[:8], "--json")
    assert r.code == 0, r.err
    h = r.json()["data"]
    assert [e["action"] for e in h["events"]] == ["add", "supersede", "trash", "restore"]
    assert h["events"][1]["detail"] == {"by": oslo.id, "valid_until": until}
    assert h["temporal"]["superseded_by"] == oslo.id and h["temporal"]["current"] is False
    assert h["temporal"]["valid_until"].startswith("2026-05-01")
    assert h["links"] == [
        {
            "kind": "supersedes",
            "direction": "in",
            "other": oslo.id,
            "other_text": "The user lives in Oslo.",
            "at": h["links"][0]["at"],
        }
    ]
    succ = cli("history", oslo.id, "--json").json()["data"]
    assert {(x["kind"], x["direction"], x["other"]) for x in succ["links"]} == {
        ("supersedes", "out", bergen.id),
        ("derived_from", "out", turn.id),
    }
    human = cli("history", bergen.id)
    assert human.code == 0
    assert "supersede" in human.out and oslo.id[:8] in human.out and "supersedes this" in human.out
    assert cli("history", "deadbeef").code == ExitCode.NOT_FOUND
