"""`memcli consolidate`, step by step, over the real store and embedder; the LLM is scripted.

What the model answers is scripted (tests/scripted.py); everything consolidate does with it — the
pairs it asks about, validation and quarantine, retiring, summarising, linking, the cursors that make
a second run a no-op — is the real code on a real SQLite + Chroma store.
"""

from __future__ import annotations

import json
import os
import stat
import threading
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from scripted import ScriptedChat

from memcli.api import Memcli
from memcli.errors import ExitCode, MemcliFailure
from memcli.records import Kind, Memory
from memcli.services import consolidate as cons
from memcli.store import NewMemory
from memcli.store.consolidation import ConsolidationStore

T0 = datetime(2026, 3, 2, 9, 0).astimezone()  # a Monday (ISO week 2026-W10)
NOW = datetime(2026, 3, 20, 12, 0).astimezone()  # that week is over


def profile_answer(*facts: str, prefs: tuple[str, ...] = (), formality: str = "casual") -> dict[str, Any]:
    return {
        "facts": list(facts),
        "preferences": list(prefs),
        "style": {"formality": formality, "length": "short", "humour": "some", "notes": ""},
    }


def run(mem: Memcli, model: ScriptedChat | None = None, **kw: Any) -> cons.ConsolidateReport:
    kw.setdefault("now", NOW)
    if model is None:
        kw.setdefault("use_llm", False)
    return mem.consolidate(model=model, **kw)


def fact(mem: Memcli, text: str, when: datetime | None = None, tags: tuple[str, ...] = ()) -> Memory:
    return mem.add(text, kind=Kind.FACT, when=when, tags=tags).added[0]


def learned(mem: Memcli, text: str, when: datetime) -> Memory:
    """A fact as chat learns it: true from, and recorded at, the time it was said."""
    t = when.timestamp()
    item = NewMemory(text, kind=Kind.FACT, source="chat:s1", event_at=t, valid_from=t, recorded_at=t, tags=("fact",))
    [mid] = mem._ctx.store.add("default", [(item, mem._ctx.embedder.embed_documents([text])[0])], mem._ctx.embedder.model_id)
    return get(mem, mid)


def get(mem: Memcli, mid: str) -> Memory:
    return mem._ctx.store.catalog.by_ids([mid])[mid]


def links(mem: Memcli, kind: str) -> set[tuple[str, str]]:
    return mem._ctx.store.catalog.links_of_kind(kind)


def dump(mem: Memcli) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every catalog table (the FTS5 index through its shadow tables)."""
    return mem._ctx.store.catalog.dump()


def json_answers(model: ScriptedChat) -> int:
    return sum(1 for kind, _ in model.requests if kind == "json")


# -- deduplicate -----------------------------------------------------------------------------------
def test_dedupe_merges_near_identical_facts_and_is_restorable(mem: Memcli) -> None:
    first = fact(mem, "The user is allergic to peanuts.", when=T0 + timedelta(days=3), tags=("health",))
    copy = fact(mem, "the user is allergic to peanuts!", when=T0, tags=("food",))
    near = fact(mem, "User is allergic to peanuts.", tags=("allergy",))
    other = fact(mem, "The user lives in Bergen.")
    different = fact(mem, "The user lives in Oslo.")
    mem._ctx.store.touch([first.id, copy.id])
    mem._ctx.store.touch([copy.id, near.id])

    report = run(mem)
    d = report.step("dedupe")
    assert d.status == "done" and d.counts["merged"] == 2 and d.counts["clusters"] == 1
    kept = get(mem, first.id)  # the first learned survives, with everything the copies knew
    assert kept.state == "active" and set(kept.tags) == {"health", "food", "allergy"}
    assert kept.event_at == T0 and kept.access_count == 4
    assert {get(mem, i).state for i in (copy.id, near.id)} == {"trashed"}
    assert links(mem, "merged_from") == {(first.id, copy.id), (first.id, near.id)}
    assert [a for _, a, _ in mem._ctx.store.catalog.history(first.id)][-1] == "merge"
    assert mem._ctx.store.catalog.history(copy.id)[-1][1:] == ("trash", {"reason": "merged", "into": first.id})
    assert {get(mem, i).state for i in (other.id, different.id)} == {"active"}  # names differ: not duplicates
    # The vector index follows: the copies are gone from recall, the survivor is found.
    hits = mem.recall("peanut allergy", kinds=[Kind.FACT], touch=False).hits
    assert [h.memory.id for h in hits if "peanut" in h.memory.text] == [first.id]
    assert mem.doctor().ok

    mem.restore([copy.id])  # the user says it was not a duplicate: it stays
    assert run(mem).step("dedupe").counts.get("merged", 0) == 0
    assert get(mem, copy.id).state == "active"


def test_dedupe_leaves_notes_episodes_and_ingested_facts_alone(mem: Memcli, tmp_path: Path) -> None:
    for _ in range(2):
        mem._ctx.store.add(
            "default",
            [(NewMemory("user: ok", kind=Kind.EPISODE, source="chat:s1"), mem._ctx.embedder.embed_documents(["user: ok"])[0])],
            mem._ctx.embedder.model_id,
        )
    mem.add("Buy milk.")
    mem.add("buy milk!")
    f = tmp_path / "facts.jsonl"
    f.write_text('{"text": "The user likes tea.", "kind": "fact"}\n{"text": "The user likes tea!", "kind": "fact"}\n')
    mem.ingest([f])
    assert run(mem).step("dedupe").counts.get("merged", 0) == 0
    assert mem.list(trash=True).total == 0


def test_dedupe_does_not_merge_different_numbers(mem: Memcli) -> None:
    fact(mem, "The user's flight to Berlin departs from gate 12 on Monday morning at nine.")
    fact(mem, "The user's flight to Berlin departs from gate 14 on Monday morning at nine.")
    assert cons.same_text("The flight leaves from gate 12 today.", "The flight leaves from gate 14 today.", 0.5) is False
    assert run(mem).step("dedupe").counts.get("merged", 0) == 0


# -- reconcile -------------------------------------------------------------------------------------
def test_reconcile_supersedes_the_older_fact_and_keeps_it(mem: Memcli) -> None:
    bergen = learned(mem, "The user lives in Bergen.", T0)
    oslo = learned(mem, "The user lives in Oslo.", T0 + timedelta(days=40))
    model = ScriptedChat(answers=[{"relation": "supersede", "text": ""}, profile_answer("The user lives in Oslo.")])
    report = run(mem, model)
    assert report.step("reconcile").counts["superseded"] == 1
    old = get(mem, bergen.id)
    assert old.state == "active" and not old.current  # never deleted: history
    assert old.valid_until == T0 + timedelta(days=40) and old.superseded_by == oslo.id
    assert (oslo.id, bergen.id) in links(mem, "supersedes")
    assert "OLDER (2026-03-02): The user lives in Bergen." in model.requests[0][1][-1].content
    now = [h.memory.text for h in mem.recall("where does the user live", kinds=[Kind.FACT], touch=False).hits]
    assert now == ["The user lives in Oslo."]
    then = mem.recall("where does the user live", kinds=[Kind.FACT], as_of=T0 + timedelta(days=1), touch=False)
    assert [h.memory.text for h in then.hits] == ["The user lives in Bergen."]


def test_reconcile_merges_refinements(mem: Memcli) -> None:
    a = fact(mem, "The user has a dog.", when=T0)
    b = fact(mem, "The user's dog is called Pickle.", when=T0 + timedelta(days=2))
    merged = "The user has a dog called Pickle."
    model = ScriptedChat(answers=[{"relation": "refine", "text": merged}, profile_answer(merged)])
    report = run(mem, model)
    assert report.step("reconcile").counts["refined"] == 1
    [new] = [m for m in mem.list(kinds=[Kind.FACT], limit=50).memories if m.current]
    assert new.text == merged and new.valid_from == T0
    for old in (get(mem, a.id), get(mem, b.id)):
        assert old.state == "active" and old.superseded_by == new.id and old.valid_until is None
    assert {(new.id, a.id), (new.id, b.id)} <= links(mem, "refines")


def test_reconcile_unrelated_changes_nothing_and_is_not_asked_again(mem: Memcli) -> None:
    fact(mem, "The user enjoys hiking in the mountains.")
    fact(mem, "The user loves mountain trekking in Norway.")
    model = ScriptedChat(answers=[{"relation": "unrelated", "text": ""}, profile_answer("The user hikes.")])
    run(mem, model)
    assert sum(1 for m in mem.list(kinds=[Kind.FACT]).memories if m.current) == 2
    calls = json_answers(model)
    run(mem, model)
    assert json_answers(model) == calls


def test_invalid_llm_answer_is_quarantined_and_nothing_applied(mem: Memcli) -> None:
    fact(mem, "The user drives a red car.", when=T0)
    fact(mem, "The user drives a blue car.", when=T0 + timedelta(days=5))
    before = dump(mem)["links"]
    model = ScriptedChat(answers=['{"relation": "supersede", "te', "nonsense"])
    report = run(mem, model)
    r = report.step("reconcile")
    assert r.counts.get("superseded", 0) == 0 and len(r.failures) == 1 and "not JSON" in r.failures[0]
    assert report.step("profile").failures and "not JSON" in report.step("profile").failures[0]
    assert all(m.current for m in mem.list(kinds=[Kind.FACT]).memories)
    assert mem.list(kinds=[Kind.PROFILE]).total == 0 and dump(mem)["links"] == before
    quarantined = mem._ctx.store.catalog.quarantined()
    assert {q[2] for q in quarantined} == {"consolidate:reconcile", "consolidate:profile"}
    assert report.failures == 2 and report.needs_attention


def test_schema_violations_are_refused(mem: Memcli) -> None:
    fact(mem, "The user drives a red car.", when=T0)
    fact(mem, "The user drives a blue car.", when=T0 + timedelta(days=5))
    model = ScriptedChat(answers=[{"relation": "merge", "text": ""}, {"facts": "x"}])
    report = run(mem, model)
    assert "schema" in report.step("reconcile").failures[0]
    assert all(m.current for m in mem.list(kinds=[Kind.FACT]).memories)


# -- summarise -------------------------------------------------------------------------------------
def episodes(mem: Memcli, day: datetime, *texts: str) -> list[Memory]:
    out = []
    for i, t in enumerate(texts):
        out += mem.add(t, kind=Kind.EPISODE, when=day + timedelta(minutes=10 * i), tags=("chat",)).added
    return out


def test_daily_and_weekly_summaries_link_to_their_sources_and_are_recallable(mem: Memcli) -> None:
    mon = episodes(mem, T0, "user: I booked the dentist for Thursday.", "assistant: Noted, Thursday at the dentist.")
    tue = episodes(mem, T0 + timedelta(days=1), "user: Pickle the beagle ate my sandwich.", "assistant: Oh no, Pickle!")
    model = ScriptedChat(
        answers=[
            {"summary": "The user booked a dentist appointment for Thursday."},
            {"summary": "The user's beagle Pickle ate the user's sandwich."},
            {"summary": "A week of dentist booking and a sandwich-stealing beagle."},
        ]
    )
    report = run(mem, model)
    s = report.step("summarise")
    assert s.counts["daily_written"] == 2 and s.counts["weekly_written"] == 1 and not s.failures
    daily = {m.tags[1]: m for m in mem.list(kinds=[Kind.SUMMARY], tags=["daily"]).memories}
    assert set(daily) == {"2026-03-02", "2026-03-03"}
    assert daily["2026-03-02"].event_at == datetime(2026, 3, 2).astimezone()
    assert {(daily["2026-03-02"].id, m.id) for m in mon} <= links(mem, "summarises")
    assert {(daily["2026-03-03"].id, m.id) for m in tue} <= links(mem, "summarises")
    [weekly] = mem.list(kinds=[Kind.SUMMARY], tags=["weekly"]).memories
    assert weekly.tags == ("weekly", "2026-W10") and weekly.event_at == datetime(2026, 3, 2).astimezone()
    assert {(weekly.id, d.id) for d in daily.values()} <= links(mem, "summarises")
    prompt = model.requests[0][1][-1].content
    assert "Monday 02 March 2026" in prompt and "09:00 user: I booked the dentist for Thursday." in prompt
    hits = mem.recall("what did the beagle eat", kinds=[Kind.SUMMARY], touch=False).hits
    assert daily["2026-03-03"].id in [h.memory.id for h in hits[:2]]

    # Idempotent: nothing new, nothing asked.
    calls = json_answers(model)
    again = run(mem, model)
    assert json_answers(model) == calls and again.step("summarise").counts == {}

    # A new turn on Monday: Monday is summarised again and replaces the old summary; so is the week.
    episodes(mem, T0 + timedelta(hours=5), "user: I also moved the dentist to Friday.")
    model.answers += [
        {"summary": "The user booked the dentist for Thursday, then moved it to Friday."},
        {"summary": "A week: the dentist moved to Friday; Pickle ate a sandwich."},
    ]
    third = run(mem, model).step("summarise")
    assert third.counts["daily_written"] == 1 and third.counts["weekly_written"] == 1
    old = get(mem, daily["2026-03-02"].id)
    assert old.state == "active" and not old.current and old.superseded_by is not None
    assert mem._ctx.store.catalog.history(old.id)[-1][1] == "refine"
    assert not get(mem, weekly.id).current


def test_unfinished_days_wait_and_forgotten_turns_leave_the_summary(mem: Memcli) -> None:
    today = episodes(mem, NOW - timedelta(hours=2), "user: I am writing this today.")
    model = ScriptedChat()
    assert run(mem, model).step("summarise").counts == {}  # today is not over
    assert json_answers(model) == 0
    later = NOW + timedelta(days=1)
    model.answers = [{"summary": "The user wrote something on the 20th, a secret code 4471."}]
    run(mem, model, now=later)
    [daily] = mem.list(kinds=[Kind.SUMMARY]).memories
    mem.forget([today[0].id])  # the only turn of that day is forgotten
    run(mem, model, now=later)
    assert get(mem, daily.id).state == "trashed"  # the summary repeated it: it goes too


def test_long_days_are_summarised_in_parts(home: Path) -> None:
    mem = Memcli(settings={("consolidate", "input_tokens"): 60})
    episodes(mem, T0, *[f"user: message number {i} about the garden and the roses" for i in range(12)])
    model = ScriptedChat(answers=[{"summary": f"part {i}"} for i in range(1, 10)])
    report = run(mem, model)
    mem.close()
    parts = report.step("summarise").llm_calls
    assert parts >= 3
    assert "Summary of its earlier part" in model.requests[1][1][-1].content and "part 1" in model.requests[1][1][-1].content


# -- profile ---------------------------------------------------------------------------------------
def test_profile_is_updated_within_budget_and_the_old_one_retired(home: Path) -> None:
    mem = Memcli(settings={("chat", "profile_tokens"): 40})
    fact(mem, "The user's name is Noor.")
    fact(mem, "The user prefers tea to coffee.")
    many = [f"The user has hobby number {i} which is very interesting." for i in range(10)]
    model = ScriptedChat(answers=[profile_answer("The user's name is Noor.", *many, prefs=("Tea, not coffee",))])
    report = run(mem, model)
    p = report.step("profile")
    assert p.counts["profile_updated"] == 1 and p.counts["profile_lines_cut"] > 0
    [profile] = mem.list(kinds=[Kind.PROFILE]).memories
    assert model.count_tokens(profile.text) <= 40
    assert profile.text.startswith("- The user's name is Noor.")
    assert profile.text.endswith("Communication style: casual; prefers short replies; humour: some.")
    prompt = model.requests[0][1][-1].content
    assert "The user prefers tea to coffee." in prompt and "At most 28 words" in prompt

    from memcli.services.profile import profile_text

    assert profile_text(mem._ctx, "default", 40, model.count_tokens)[0] == profile.text
    assert run(mem, model).step("profile").llm_calls == 0  # nothing learned since

    fact(mem, "The user started learning Norwegian.")
    model.answers = [profile_answer("The user's name is Noor.", "The user is learning Norwegian.", formality="neutral")]
    run(mem, model)
    new = [m for m in mem.list(kinds=[Kind.PROFILE]).memories if m.current]
    assert len(new) == 1 and "Norwegian" in new[0].text
    old = get(mem, profile.id)
    assert old.state == "active" and old.superseded_by == new[0].id
    assert "- The user started learning Norwegian." in model.requests[-1][1][-1].content
    assert profile.text in model.requests[-1][1][-1].content  # the model builds on the old portrait
    mem.close()


# -- link ------------------------------------------------------------------------------------------
def test_related_memories_are_linked(mem: Memcli) -> None:
    a = mem.add("Pickle the beagle had her vaccination on Monday.", tags=["dog"]).added[0]
    b = mem.add("The vet vaccinated Pickle the beagle.").added[0]
    c = mem.add("Pickle needs ten days of rest after the vet visit.", tags=["dog"]).added[0]
    d = mem.add("The quarterly tax return is due in April.").added[0]
    report = run(mem)
    assert report.step("link").counts["links"] >= 2
    related = links(mem, "related")
    pair = {tuple(sorted(p)) for p in related}
    assert tuple(sorted((a.id, b.id))) in pair  # similar
    assert tuple(sorted((a.id, c.id))) in pair  # related and sharing the tag "dog"
    assert not any(d.id in p for p in pair)
    assert run(mem).step("link").counts.get("links", 0) == 0


# -- decay -----------------------------------------------------------------------------------------
def test_decay_reports_prune_candidates_and_prunes_nothing(mem: Memcli) -> None:
    old = datetime(2020, 1, 1).astimezone()
    for i in range(4):
        mem._ctx.store.add(
            "default",
            [
                (
                    NewMemory(f"Old chatter number {i}.", kind=Kind.EPISODE, source="chat:s0", event_at=old.timestamp(),
                                   recorded_at=old.timestamp(), importance=0.1),
                    mem._ctx.embedder.embed_documents([f"Old chatter number {i}."])[0],
                )
            ],
            mem._ctx.embedder.model_id,
        )  # fmt: skip
    mem.add("Fresh and important.", pinned=True)
    total = mem.stats().kinds
    d = run(mem).step("decay")
    assert d.status == "done", d.reason
    assert d.counts.get("candidates", 0) >= 1 and d.examples
    assert mem.stats().kinds == total and mem.list(trash=True).total == 0


# -- the run as a whole ------------------------------------------------------------------------------
def busy_store(mem: Memcli) -> None:
    fact(mem, "The user is allergic to peanuts.")
    fact(mem, "the user is allergic to peanuts!")
    fact(mem, "The user lives in Bergen.", when=T0)
    fact(mem, "The user lives in Oslo.", when=T0 + timedelta(days=30))
    episodes(mem, T0, "user: I booked the dentist.", "assistant: Good.")
    mem.add("Pickle the beagle had her vaccination on Monday.", tags=["dog"])
    mem.add("The vet vaccinated Pickle the beagle.")


def full_answers() -> list[str | dict[str, Any]]:
    return [
        {"relation": "supersede", "text": ""},
        {"summary": "The user booked the dentist."},
        {"summary": "A week with a dentist booking."},
        profile_answer("The user lives in Oslo.", "The user is allergic to peanuts."),
    ]


def test_dry_run_changes_nothing(mem: Memcli) -> None:
    busy_store(mem)
    before = dump(mem)
    model = ScriptedChat(answers=full_answers())
    report = run(mem, model, dry_run=True)
    assert dump(mem) == before and model.requests == []
    assert {s.status for s in report.steps} == {"planned"}
    assert report.step("dedupe").counts["merged"] == 1 and report.step("reconcile").counts["pairs"] >= 1
    assert report.step("summarise").counts["days_to_summarise"] == 1
    assert report.step("profile").counts["profile_to_update"] == 1 and report.step("link").counts["links"] >= 1
    assert not (mem._ctx.paths.log_dir / "consolidate.log").exists()


def test_second_run_does_nothing_new(mem: Memcli) -> None:
    busy_store(mem)
    model = ScriptedChat(answers=full_answers())
    first = run(mem, model)
    assert first.failures == 0 and first.llm_calls == 4, first.to_json()
    before = dump(mem)
    second = run(mem, model)
    after = dump(mem)
    assert second.llm_calls == 0 and second.failures == 0
    assert all(not s.counts.get(k) for s in second.steps for k in ("merged", "superseded", "links", "profile_updated"))
    for table in ("memories", "links", "audit", "quarantine"):
        assert after[table] == before[table], table


def test_no_llm_runs_the_other_steps_and_says_which_it_skipped(mem: Memcli, cli: Any) -> None:
    busy_store(mem)
    report = run(mem, use_llm=False)
    skipped = {s.step: s.reason for s in report.steps if s.status == "skipped"}
    assert skipped == {"reconcile": "--no-llm", "summarise": "--no-llm", "profile": "--no-llm"}
    assert report.step("dedupe").status == "done" and not report.needs_attention

    # No model configured: the same steps are skipped, and (piped, as under cron) it says so on stderr.
    r = cli("consolidate")
    assert r.code == 0 and r.out == ""
    assert "skipped reconcile, summarise, profile: no chat model configured" in r.err
    data = cli("consolidate", "--json").json()["data"]
    assert data["needs_attention"] and [s["status"] for s in data["steps"]][1:4] == ["skipped"] * 3
    assert cli("consolidate", "--no-llm").err == ""


def test_report_is_logged_owner_only(mem: Memcli) -> None:
    busy_store(mem)
    report = run(mem)
    log = mem._ctx.paths.log_dir / "consolidate.log"
    assert report.log_file == str(log)
    assert stat.S_IMODE(os.stat(log).st_mode) == 0o600
    run(mem)
    lines = [json.loads(x) for x in log.read_text().splitlines()]
    assert len(lines) == 2 and lines[0]["steps"][0]["step"] == "dedupe" and "seconds" in lines[0]["steps"][0]


def test_a_second_concurrent_run_exits_with_busy(mem: Memcli, cli: Any) -> None:
    with cons.run_lock(mem._ctx, wait=False):
        r = cli("consolidate", "--no-llm")
        assert r.code == ExitCode.BUSY == 9
        assert "another `memcli consolidate` is running" in r.err and f"pid {os.getpid()}" in r.err
        with pytest.raises(MemcliFailure) as e:
            mem.consolidate(use_llm=False)
        assert e.value.code == ExitCode.BUSY
    # --wait queues behind the holder instead.
    held = threading.Event()

    def hold() -> None:
        with cons.run_lock(mem._ctx, wait=False):
            held.set()
            time.sleep(0.5)

    t = threading.Thread(target=hold)
    t.start()
    held.wait()
    t0 = time.perf_counter()
    assert mem.consolidate(use_llm=False, wait=True).step("dedupe").status == "done"
    assert time.perf_counter() - t0 >= 0.3
    t.join()


def test_a_change_interrupted_between_transactions_is_completed_by_the_next_run(
    mem: Memcli, monkeypatch: pytest.MonkeyPatch
) -> None:
    episodes(mem, T0, "user: I booked the dentist.")
    model = ScriptedChat(answers=[{"summary": "The user booked the dentist."}, {"summary": "Dentist week."}])
    real = ConsolidationStore.complete_intent

    def die(*a: Any, **kw: Any) -> None:
        raise KeyboardInterrupt  # the process is gone after the summary's row, before its links

    monkeypatch.setattr(ConsolidationStore, "complete_intent", die)
    with pytest.raises(KeyboardInterrupt):
        run(mem, model)
    assert mem._ctx.store.catalog.meta(cons.INTENT) is not None
    monkeypatch.setattr(ConsolidationStore, "complete_intent", real)
    report = run(mem, model)
    assert report.recovered == 1 and mem._ctx.store.catalog.meta(cons.INTENT) is None
    [daily] = mem.list(kinds=[Kind.SUMMARY], tags=["daily"]).memories
    assert len(links(mem, "summarises")) == 2  # the day's link, and the week's
    assert mem.list(kinds=[Kind.SUMMARY], tags=["daily"]).total == 1 and daily.current


def test_since_limits_the_work(mem: Memcli) -> None:
    fact(mem, "The user is allergic to peanuts.")
    fact(mem, "the user is allergic to peanuts!")
    later = datetime.now().astimezone() + timedelta(hours=1)
    r = run(mem, since=later)
    assert r.step("dedupe").counts.get("merged", 0) == 0 and r.since != "everything"
    assert run(mem).step("dedupe").counts["merged"] == 1  # the cursor did not move past them


def test_cli_table_and_json(cli: Any, mem: Memcli) -> None:
    busy_store(mem)
    out = cli("consolidate", "--no-llm", "--json").json()
    assert out["command"] == "consolidate" and out["ok"]
    assert [s["step"] for s in out["data"]["steps"]] == list(cons.STEPS)
    assert cli("consolidate", "--dry-run", "--no-llm", "--since", "yesterday").code == 0
