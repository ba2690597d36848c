"""No unattended destruction: the change budget of `memcli consolidate` and `memcli prune --yes`, the
kinds that fade by default, and runs whose writes do not take.

The store and embedder are real. Time passing is simulated the way tests/test_lifecycle.py does it:
memories are written through the store with an old recording time. The "broken backends" are real
store methods replaced by ones that accept a change and drop it, which is the failure the no-effect
check exists for. The chat model is a scripted implementation of the ChatModel protocol.
"""

from __future__ import annotations

import io
import json
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from scripted import ScriptedChat

from memcli.api import Memcli
from memcli.errors import ExitCode, MemcliFailure
from memcli.records import Kind
from memcli.store import MemoryStore, NewMemory
from memcli.store.consolidation import ConsolidationStore

DAY = 86400.0


@contextmanager
def opened() -> Iterator[Memcli]:
    """A Memcli on the test's home, closed before the CLI (which opens its own) runs."""
    mem = Memcli()
    try:
        yield mem
    finally:
        mem.close()


def seed(mem: Memcli, text: str, days_ago: float, kind: Kind = Kind.EPISODE, **fields: Any) -> str:
    """A memory recorded ``days_ago`` days ago and never recalled since."""
    emb = mem._ctx.embedder
    item = NewMemory(text, kind=kind, recorded_at=time.time() - days_ago * DAY, **fields)
    [mid] = mem._ctx.store.add("default", [(item, emb.embed_documents([text])[0])], emb.model_id)
    return mid


def states(mem: Memcli, ids: list[str]) -> dict[str, str]:
    got = mem._ctx.store.catalog.by_ids(ids)
    return {i: got[i].state if i in got else "gone" for i in ids}


def by_kind(cli: Any) -> dict[str, int]:
    """Active memories per kind, as `memcli stats` reports them."""
    return dict(cli("stats", "--json").json()["data"]["kinds"])


class Supersedes(ScriptedChat):
    """A chat model gone wrong: every pair of facts is a contradiction (summaries and profiles are fine)."""

    def complete_json(self, messages: Any, schema: dict[str, Any], *, max_tokens: int, cancel: Any = None) -> str:
        self.requests.append(("json", tuple(messages)))
        props = schema["properties"]
        if "relation" in props:
            return json.dumps({"relation": "supersede", "text": ""})
        if "summary" in props:
            return json.dumps({"summary": "A day of chat."})
        return json.dumps({"facts": [], "preferences": [], "style": {"formality": "casual", "length": "short", "humour": "some", "notes": ""}})


# -- prune -------------------------------------------------------------------------------------------
def test_prune_yes_over_the_budget_changes_nothing_exits_10_and_force_applies_it(cli: Any, home: Path) -> None:
    with opened() as mem:
        faded = [seed(mem, f"user: an old remark number {i} about the weather.", 400) for i in range(6)]
        for i in range(20):
            seed(mem, f"A fresh note number {i} about the garden.", 1, kind=Kind.NOTE)
    # 26 current memories: 2 % is 0, so the floor of 3 is the budget; 6 faded turns are over it.
    plan = cli("prune", "--json").json()["data"]
    assert plan["budget"] == {"current": 26, "fraction": 0.02, "floor": 3, "limit": 3, "over": True}
    shown = cli("prune")
    assert shown.code == 0 and "over the budget of 3" in shown.err and "--force" in shown.err

    r = cli("prune", "--yes")
    assert r.code == ExitCode.OVER_BUDGET == 10
    assert "prune would move to the trash 6 of the 26 memories" in r.err and "--force" in r.err
    as_json = cli("prune", "--yes", "--json").json()
    assert as_json["ok"] is False and as_json["error"]["name"] == "OVER_BUDGET"
    assert cli("list", "--trash", "--json").json()["data"]["total"] == 0  # nothing destructive happened

    done = cli("prune", "--yes", "--force", "--json")
    assert done.code == 0, done.err
    assert sorted(done.json()["data"]["pruned"]) == sorted(faded) and done.json()["data"]["forced"] is True
    assert cli("list", "--trash", "--json").json()["data"]["total"] == 6


def test_a_small_space_may_always_lose_a_few(cli: Any, home: Path) -> None:
    with opened() as mem:
        old = [seed(mem, f"user: chatter number {i} from long ago.", 400) for i in range(3)]
    r = cli("prune", "--yes")  # 3 of 3 memories (100 %), but within the floor of 3
    assert r.code == 0, r.err
    with opened() as mem:
        assert set(states(mem, old).values()) == {"trashed"}


def test_on_a_terminal_the_users_yes_is_the_override(cli: Any, home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with opened() as mem:
        old = [seed(mem, f"user: a long forgotten remark number {i} about tea.", 400) for i in range(5)]

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    monkeypatch.setattr(sys, "stdin", Terminal("y\n"))
    r = cli("prune")
    assert r.code == 0 and "moved 5" in r.out and "--force" in r.err  # it was told, and said yes
    with opened() as mem:
        assert set(states(mem, old).values()) == {"trashed"}


def test_the_api_refuses_over_the_budget_too(mem: Memcli) -> None:
    faded = [seed(mem, f"user: remark {i} said a long time ago.", 400) for i in range(5)]
    plan = mem.prune().plan
    over = plan.over_budget()
    assert over is not None and (over.wanted, over.limit) == (5, 3)
    with pytest.raises(MemcliFailure) as e:
        mem.apply_prune(plan)
    assert e.value.code == ExitCode.OVER_BUDGET and "--force" in e.value.hint
    assert set(states(mem, faded).values()) == {"active"}
    assert len(mem.apply_prune(plan, force=True).pruned) == 5


# -- consolidate -------------------------------------------------------------------------------------
DUPLICATES = [
    ("The user is allergic to peanuts.", "the user is allergic to peanuts!"),
    ("The user's sister is called Liv.", "The user's sister is called Liv!"),
    ("The user drives a green van.", "the user drives a green van"),
    ("The user's passport is in the blue folder.", "The user's passport is in the blue folder!!"),
    ("The user plays the cello on Sundays.", "the user plays the cello on sundays."),
]


def test_consolidate_over_the_budget_merges_nothing_exits_10_and_force_goes_through(cli: Any, home: Path) -> None:
    with opened() as mem:
        for a, b in DUPLICATES:
            mem.add(a, kind=Kind.FACT)
            mem.add(b, kind=Kind.FACT)
        mem.add("Pickle the beagle had her vaccination on Monday.")
        mem.add("The vet vaccinated Pickle the beagle.")
    r = cli("consolidate", "--no-llm")
    assert r.code == ExitCode.OVER_BUDGET
    assert "dedupe would merge away 5 of the 12 memories" in r.err and "over the budget of 3" in r.err
    assert "memcli consolidate --force" in r.err
    assert cli("list", "--trash", "--json").json()["data"]["total"] == 0
    assert by_kind(cli)["fact"] == 10

    data = cli("consolidate", "--no-llm", "--json")
    assert data.code == ExitCode.OVER_BUDGET  # the cursor stayed: the same merges are found again
    report = data.json()["data"]
    assert report["over_budget"]["step"] == "dedupe" and report["over_budget"]["wanted"] == 5
    steps = {s["step"]: s for s in report["steps"]}
    assert steps["dedupe"]["status"] == "over budget" and steps["dedupe"]["counts"]["held_back"] == 5
    assert steps["link"]["status"] == steps["decay"]["status"] == "done"  # what destroys nothing still ran
    assert cli("list", "--trash", "--json").json()["data"]["total"] == 0

    dry = cli("consolidate", "--no-llm", "--dry-run")
    assert dry.code == 0  # a dry run attempts nothing; it says where a real run would stop

    forced = cli("consolidate", "--no-llm", "--force", "--json")
    assert forced.code == 0, forced.err
    assert forced.json()["data"]["forced"] is True
    assert cli("list", "--trash", "--json").json()["data"]["total"] == 5 and by_kind(cli)["fact"] == 5
    assert cli("consolidate", "--no-llm").code == 0  # nothing left to do: a quiet night


def test_a_model_that_supersedes_everything_retires_nothing(mem: Memcli) -> None:
    pairs = [
        ("The user lives in Bergen.", "The user lives in Oslo."),
        ("The user's car is red.", "The user's car is blue."),
        ("The user works as a nurse.", "The user works as a teacher."),
        ("The user's dog is called Pickle.", "The user's dog is called Biscuit."),
    ]
    t0 = time.time() - 60 * DAY
    for a, b in pairs:
        for text, t in ((a, t0), (b, t0 + 30 * DAY)):
            item = NewMemory(text, kind=Kind.FACT, source="chat:s1", event_at=t, valid_from=t, recorded_at=t)
            mem._ctx.store.add("default", [(item, mem._ctx.embedder.embed_documents([text])[0])], mem._ctx.embedder.model_id)
    facts = [m.id for m in mem.list(kinds=[Kind.FACT], limit=50).memories]
    broken = Supersedes()
    report = mem.consolidate(model=broken)
    rec = report.step("reconcile")
    assert rec.status == "over budget" and report.over_budget is not None and report.over_budget.step == "reconcile"
    assert report.over_budget.wanted > 3 and rec.llm_calls > 0
    assert all(m.current for m in mem._ctx.store.catalog.by_ids(facts).values())  # nothing retired
    failure = report.failure()
    assert failure is not None and failure.code == ExitCode.OVER_BUDGET

    forced = mem.consolidate(model=Supersedes(), force=True)
    assert forced.over_budget is None and forced.forced and forced.step("reconcile").counts["superseded"] > 3
    assert sum(1 for m in mem._ctx.store.catalog.by_ids(facts).values() if not m.current) > 3


# -- two idle years ----------------------------------------------------------------------------------
def test_an_idle_store_left_two_years_keeps_every_note_and_fact_through_cron(cli: Any, home: Path) -> None:
    """Two years nobody used it; then cron's consolidate and prune --yes run (and the user, told by
    cron's mail, forces the prune): conversation turns fade, nothing written on purpose goes."""
    two_years = 730
    with opened() as mem:
        notes = [
            seed(mem, f"Note {i}: the {topic} is in the {place}.", two_years + i, kind=Kind.NOTE, importance=imp)
            for i, (topic, place, imp) in enumerate(
                [("spare key", "shed", 0.2), ("tax folder", "attic", 0.5), ("bike pump", "garage", 0.3),
                 ("wifi password card", "kitchen drawer", 0.2), ("winter tyres", "basement", 0.5)]
            )
        ]  # fmt: skip
        facts = [
            seed(mem, text, two_years + 3 * i, kind=Kind.FACT, source="chat:s0")
            for i, text in enumerate(
                ["The user's mother was born in Tromsø.", "The user is allergic to penicillin.",
                 "The user's blood type is A negative.", "The user married Sam in June 2019."]
            )
        ]  # fmt: skip
        facts.append(mem.add("The user's bank is Sparebank 1.", kind=Kind.FACT).added[0].id)  # `add --kind fact`
        turns = [seed(mem, f"user: small talk number {i} about nothing much.", two_years + i / 10) for i in range(12)]
        summary = seed(mem, "The user chatted about nothing much.", two_years, kind=Kind.SUMMARY, source="consolidate:daily",
                       importance=0.6, tags=("daily", "2024-01-01"))  # fmt: skip
        curve = mem.prune(kinds=list(Kind)).plan  # what the curve alone says has faded, every kind named
        assert {c.memory.kind for c in curve.candidates} == {Kind.NOTE, Kind.FACT, Kind.EPISODE}  # so the test bites
    before = by_kind(cli)

    assert cli("consolidate").code == 0  # no chat model: the LLM steps are skipped, nothing else to do
    night = cli("prune", "--yes")
    assert night.code == ExitCode.OVER_BUDGET  # all 12 turns faded at once: more than one night may take
    assert by_kind(cli) == before
    forced = cli("prune", "--yes", "--force", "--json")
    assert forced.code == 0, forced.err
    assert sorted(forced.json()["data"]["pruned"]) == sorted(turns)
    with opened() as mem:
        assert set(states(mem, notes + facts + [summary]).values()) == {"active"}
    after = by_kind(cli)
    assert after == {"note": 5, "fact": 5, "summary": 1} and before["episode"] == 12


# -- runs that wrote nothing ------------------------------------------------------------------------
def test_prune_whose_writes_do_not_take_exits_11(cli: Any, home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert cli("prune", "--yes").code == 0  # nothing to do is not a failure
    with opened() as mem:
        old = seed(mem, "user: something from long ago.", 400)

    def dropped(self: MemoryStore, memories: Any, reason: str = "forget") -> None:
        return None  # a store that says yes and keeps nothing

    with monkeypatch.context() as patch:
        patch.setattr(MemoryStore, "trash", dropped)
        r = cli("prune", "--yes")
    assert r.code == ExitCode.NO_EFFECT == 11 and "none of them changed" in r.err and "memcli doctor" in r.err
    assert cli("show", old, "--json").json()["data"]["state"] == "active"
    assert cli("prune", "--yes").code == 0  # with a working store the same plan goes through


def test_skipped_because_the_user_changed_them_is_not_no_effect(mem: Memcli) -> None:
    a = seed(mem, "user: an old remark about gutters.", 400)
    plan = mem.prune().plan
    mem._ctx.store.touch([a])  # recalled since the plan was shown
    done = mem.apply_prune(plan)
    assert done.skipped == (a,) and not done.pruned and not done.unconfirmed


def test_consolidate_whose_writes_do_not_take_exits_11(cli: Any, home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with opened() as mem:
        a, b = DUPLICATES[0]
        mem.add(a, kind=Kind.FACT)
        mem.add(b, kind=Kind.FACT)
    with monkeypatch.context() as patch:
        patch.setattr(ConsolidationStore, "merge", lambda self, keep_id, merged_ids: True)  # accepted, not done
        r = cli("consolidate", "--no-llm", "--json")
        assert r.code == ExitCode.NO_EFFECT
        data = r.json()["data"]
        assert data["no_effect"] is True and data["steps"][0]["unconfirmed"] == 1 and data["steps"][0]["writes"] == 0
        assert by_kind(cli)["fact"] == 2
        text = cli("consolidate", "--no-llm")  # the change was held back: it is tried again, and said again
        assert text.code == ExitCode.NO_EFFECT and "none of them changed" in text.err
    ok = cli("consolidate", "--no-llm", "--json")
    assert ok.code == 0 and ok.json()["data"]["steps"][0]["writes"] == 1 and by_kind(cli)["fact"] == 1


# -- settings ----------------------------------------------------------------------------------------
def test_budget_and_kind_settings_are_checked(cli: Any, home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MEMCLI_LIFECYCLE_PRUNE_KINDS", "episode,diary")
    r = cli("prune")
    assert r.code == ExitCode.CONFIG and "prune_kinds" in r.err
    monkeypatch.setenv("MEMCLI_LIFECYCLE_PRUNE_KINDS", "episode,note")
    monkeypatch.setenv("MEMCLI_LIFECYCLE_MAX_CHANGE_FRACTION", "1.5")
    r = cli("prune")
    assert r.code == ExitCode.CONFIG and "max_change_fraction" in r.err
    monkeypatch.setenv("MEMCLI_LIFECYCLE_MAX_CHANGE_FRACTION", "0.5")
    with opened() as mem:
        note = seed(mem, "A note nobody read in ten years.", 3650, kind=Kind.NOTE)
        for i in range(3):
            seed(mem, f"A fresh note {i}.", 1, kind=Kind.NOTE)
    assert [c["id"] for c in cli("prune", "--json").json()["data"]["candidates"]] == [note]
