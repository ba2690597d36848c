"""Review before remembering ([chat] review = true): what chat learns waits, pending, for the user.

Learning runs for real (the rules extractor, or a scripted model's answers) on a real store and the
real MiniLM; what is asserted is where a pending fact may and may not show up, and what approving,
rejecting and editing do to memory.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import storekit
from scripted import ScriptedChat, facts

from memcli.api import Memcli
from memcli.backends.base import ChatMessage
from memcli.records import Kind
from memcli.services.chat import ChatSession
from memcli.store import vec_to_blob

T0 = datetime(2026, 3, 2, 9, 0).astimezone()
PICKLE = "My dog is called Pickle."
PICKLE_FACT = "The user's dog is called Pickle."  # what the rules make of it


@pytest.fixture
def rev(home: Path) -> Iterator[Memcli]:
    """Review on; facts extracted by rule, so no model answer is needed to learn."""
    m = Memcli(settings={("chat", "review"): True, ("chat", "extractor"): "rules"})
    yield m
    m.close()


def session(mem: Memcli, model: ScriptedChat | None = None) -> ChatSession:
    return ChatSession(mem._ctx, model or ScriptedChat(), background=False, clock=lambda: T0)


def facts_in_memory(mem: Memcli) -> list[str]:
    return [m.text for m in mem.list(kinds=[Kind.FACT], limit=100).memories]


def prompt_text(messages: tuple[ChatMessage, ...]) -> str:
    return "\n".join(m.content for m in messages)


def test_a_learned_fact_waits_and_is_used_nowhere_until_approved(rev: Memcli) -> None:
    model = ScriptedChat()
    s = session(rev, model)
    r = s.ask(PICKLE)
    [change] = s.report.changes
    assert (change.action, change.text, change.pending_review) == ("added", PICKLE_FACT, True)
    assert facts_in_memory(rev) == []
    [pending] = rev.review().facts
    assert (pending.id, pending.text, pending.action, pending.said) == (change.memory_id, PICKLE_FACT, "add", PICKLE)

    # Not recalled, not in the next prompt (its recalled notes, profile or system message).
    hits = rev.recall("what is my dog called?", touch=False).hits
    assert all(h.memory.text != PICKLE_FACT and h.memory.id != pending.id for h in hits)
    s.ask("What is my dog called?")
    assert PICKLE_FACT not in prompt_text(model.requests[-1][1])
    s.close()
    s2 = session(rev, model)
    assert PICKLE_FACT not in s2.current_profile()[0]

    result = rev.approve([pending.id[:8]])
    [d] = result.decisions
    assert (d.outcome, d.memory_id, result.approved) == ("added", pending.id, 1)
    assert rev.review().facts == ()
    fact = rev.show(pending.id)
    assert (fact.text, fact.kind, fact.source, fact.state) == (PICKLE_FACT, Kind.FACT, f"chat:{s.session_id}", "active")
    assert [(k, dst) for _, k, dst in rev._ctx.store.catalog.links(fact.id)] == [("derived_from", r.stored[0])]
    assert rev.recall("what is my dog called?", kinds=[Kind.FACT], touch=False).hits[0].memory.id == fact.id
    s3 = session(rev, model)
    assert PICKLE_FACT in s3.current_profile()[0]
    s3.ask("What is my dog called?")
    assert PICKLE_FACT in prompt_text(model.requests[-1][1])


RELATED = {("chat", "review"): True, ("chat", "related_similarity"): 0.2}  # every home counts as related


def test_a_pending_correction_retires_the_old_fact_only_on_approval(home: Path) -> None:
    mem = Memcli(settings=RELATED)
    bergen = mem.add("The user lives in Bergen.", kind=Kind.FACT).added[0]
    model = ScriptedChat(answers=[facts("The user lives in Oslo now."), {"action": "supersede", "target": 1, "text": ""}])
    s = session(mem, model)
    later = T0 + timedelta(days=3)
    s.ask("I moved to Oslo.", at=later)
    [change] = s.report.changes
    assert (change.action, change.target_id, change.pending_review) == ("superseded", bergen.id, True)
    [pending] = mem.review().facts
    assert (pending.action, pending.target_id, pending.target_text) == ("supersede", bergen.id, "The user lives in Bergen.")
    assert mem.show(bergen.id).current  # still what memcli holds true
    assert facts_in_memory(mem) == ["The user lives in Bergen."]

    [d] = mem.approve([pending.id]).decisions
    assert (d.outcome, d.target_id) == ("superseded", bergen.id)
    old = mem.show(bergen.id)
    assert old.retired_at is not None and old.superseded_by == pending.id
    assert old.valid_until is not None and abs(old.valid_until.timestamp() - later.timestamp()) < 1
    assert [m.text for m in mem.list(kinds=[Kind.FACT]).memories if m.current] == ["The user lives in Oslo now."]
    mem.close()


def test_two_pending_corrections_of_one_fact_leave_one_current(home: Path) -> None:
    """Both were learned against the same old fact; approving both in turn must not leave two homes."""
    mem = Memcli(settings=RELATED)
    mem.add("The user lives in Bergen.", kind=Kind.FACT)
    supersede = {"action": "supersede", "target": 1, "text": ""}
    model = ScriptedChat(answers=[facts("The user lives in Oslo now."), supersede, facts("The user lives in Tromsø now."), supersede])
    s = session(mem, model)
    s.ask("I moved to Oslo.")
    s.ask("I moved to Tromsø.")
    assert [f.target_text for f in mem.review().facts] == ["The user lives in Bergen."] * 2
    result = mem.approve(every=True)
    assert [d.outcome for d in result.decisions] == ["superseded", "superseded"]
    oslo = result.decisions[0].memory_id
    assert result.decisions[1].target_id == oslo and "replaced" in result.decisions[1].reason
    assert [m.text for m in mem.list(kinds=[Kind.FACT]).memories if m.current] == ["The user lives in Tromsø now."]
    mem.close()


def test_a_rejected_fact_is_not_learned_again_from_the_same_words(rev: Memcli) -> None:
    s = session(rev)
    s.ask(PICKLE)
    [pending] = rev.review().facts
    result = rev.reject([pending.id])
    assert (result.rejected, result.decisions[0].outcome) == (1, "rejected")
    assert rev.review().facts == ()
    # Its text is gone from the catalog; only the turn the user typed keeps their words.
    dump = repr(rev._ctx.store.catalog.dump())
    assert PICKLE_FACT not in dump and pending.id not in dump

    s.ask(PICKLE)
    dropped = s.report.changes[-1]
    assert (dropped.action, dropped.text) == ("dropped", PICKLE_FACT) and dropped.reason.startswith("rejected before")
    assert rev.review().facts == () and facts_in_memory(rev) == []
    # The rejection stands with review off too.
    rev._ctx.override("chat", "review", False)
    s.ask("my dog is called   PICKLE")  # the same words, however typed
    assert s.report.changes[-1].action == "dropped" and facts_in_memory(rev) == []
    s.ask("I live in Oslo.")  # other words are learned as usual
    assert facts_in_memory(rev) == ["The user lives in Oslo."]


def test_edit_keeps_the_users_words_and_the_learned_wording_is_not_proposed_again(rev: Memcli) -> None:
    s = session(rev)
    s.ask(PICKLE)
    [pending] = rev.review().facts
    [d] = rev.edit_pending(pending.id, "  The user's dog is a beagle   called Pickle. ").decisions
    assert (d.outcome, d.memory_id, d.reason) == ("added", pending.id, "edited")
    fact = rev.show(pending.id)
    assert fact.text == "The user's dog is a beagle called Pickle."
    # Re-embedded: the vector is the new text's, so recall by the new word finds it.
    assert rev.recall("beagle", kinds=[Kind.FACT], touch=False).hits[0].memory.id == fact.id
    stored = rev._ctx.store.catalog.embeddings([fact.id])[fact.id]
    assert stored == vec_to_blob(rev._ctx.embedder.embed_documents([fact.text])[0])

    s.ask(PICKLE)
    assert s.report.changes[-1].action == "dropped" and "these words" in s.report.changes[-1].reason
    assert rev.review().facts == ()


def test_remember_is_not_reviewed_and_duplicates_wait_once(rev: Memcli) -> None:
    s = session(rev)
    change = s.remember_text("My locker code is 4471.")
    assert change.action == "added" and not change.pending_review
    assert facts_in_memory(rev) == ["My locker code is 4471."]
    s.ask(PICKLE)
    s.ask(PICKLE)
    assert [(c.action, c.reason) for c in s.report.changes[1:]] == [("added", ""), ("duplicate", "already waiting for review")]
    assert len(rev.review().facts) == 1


def test_forget_that_rejects_a_matching_fact_waiting_for_review(rev: Memcli) -> None:
    s = session(rev)
    s.ask(PICKLE)
    s.ask("I work as a nurse.")
    changes = s.forget("my dog Pickle")
    held = [c for c in changes if c.pending_review]
    assert [(c.action, c.text) for c in held] == [("forgotten", PICKLE_FACT)]
    assert [f.text for f in rev.review().facts] == ["The user works as a nurse."]
    s.ask(PICKLE)
    assert s.report.changes[-1].action == "dropped"


def test_approving_a_fact_known_meanwhile_writes_nothing(rev: Memcli) -> None:
    s = session(rev)
    s.ask(PICKLE)
    assert len(rev.review().facts) == 1
    known = rev.add(PICKLE_FACT, kind=Kind.FACT).added[0]
    [d] = rev.approve(every=True).decisions
    assert (d.outcome, d.target_id, d.memory_id) == ("duplicate", known.id, None)
    assert facts_in_memory(rev) == [PICKLE_FACT] and rev.review().facts == ()


def test_an_approval_cut_short_by_the_vector_index_completes_at_the_next_start(home: Path) -> None:
    """The memory and the queue change in one transaction: a failure after it leaves the fact approved
    (its vector write replayed at the next open), never lost and never both pending and a memory."""
    mem = Memcli(settings={("chat", "review"): True, ("chat", "extractor"): "rules"})
    session(mem).ask(PICKLE)
    [pending] = mem.review().facts
    index = mem._ctx.store.index

    def broken(*args: object, **kwargs: object) -> None:
        raise OSError("the vector index went away")

    index.upsert = broken  # type: ignore[method-assign]
    with pytest.raises(OSError):
        mem.approve([pending.id])
    assert mem._ctx.store.catalog.count_where(vec_state="pending_add") == 1
    mem._ctx.store.close()  # the process "dies" here
    again = Memcli()
    assert again.review().facts == ()
    assert again._ctx.store.catalog.count_where(vec_state="pending_add") == 0  # replayed at open
    assert again.recall("what is my dog called?", kinds=[Kind.FACT], touch=False).hits[0].memory.id == pending.id
    assert again.doctor().ok
    again.close()


def test_unknown_ids_change_nothing(rev: Memcli) -> None:
    from memcli.errors import ExitCode, MemcliFailure

    session(rev).ask(PICKLE)
    [pending] = rev.review().facts
    with pytest.raises(MemcliFailure) as e:
        rev.approve([pending.id, "deadbeef"])
    assert e.value.code == ExitCode.NOT_FOUND
    with pytest.raises(MemcliFailure) as e:
        rev.reject([pending.id], every=True)
    assert e.value.code == ExitCode.USAGE
    assert [f.id for f in rev.review().facts] == [pending.id]  # all ids are checked before anything changes


def test_review_off_by_default_learns_at_once(mem: Memcli) -> None:
    assert mem._ctx.settings.chat.review is False
    s = session(mem, ScriptedChat(answers=[facts("The user's dog is called Pickle.")]))
    s.ask(PICKLE)
    assert [(c.action, c.pending_review) for c in s.report.changes] == [("added", False)]
    assert facts_in_memory(mem) == [PICKLE_FACT] and mem.review().facts == ()


def test_cli_lists_and_decides_with_json(rev: Memcli, cli: Callable[..., Any]) -> None:
    s = session(rev)
    for message in (PICKLE, "I live in Oslo.", "I work as a nurse."):
        s.ask(message)
    rev.close()

    r = cli("review", "--json")
    assert r.code == 0, r.err
    env = r.json()
    assert (env["command"], env["ok"], env["data"]["count"]) == ("review", True, 3)
    first = env["data"]["pending"][0]
    assert set(first) == {"id", "space", "text", "learned_at", "source", "tags", "action", "target_id", "target_text", "said"}
    assert (first["text"], first["said"], first["action"]) == (PICKLE_FACT, PICKLE, "add")
    ids = [p["id"] for p in env["data"]["pending"]]

    r = cli("review")  # piped: a tab-separated table
    assert r.code == 0 and r.out.splitlines()[0].split("\t") == ["id", "learned", "fact", "on approval", "you said"]
    assert ids[0][:8] in r.out

    r = cli("review", "reject", ids[0][:8], "--json")
    assert r.code == 0, r.err
    data = r.json()["data"]
    assert (r.json()["command"], data["rejected"], data["approved"]) == ("review reject", 1, 0)
    assert data["decisions"] == [
        {"id": ids[0], "text": PICKLE_FACT, "outcome": "rejected", "memory_id": None, "target_id": None, "reason": ""}
    ]
    r = cli("review", "approve", "--all", "--json")
    assert r.code == 0, r.err
    assert [(d["id"], d["outcome"], d["memory_id"]) for d in r.json()["data"]["decisions"]] == [
        (ids[1], "added", ids[1]),
        (ids[2], "added", ids[2]),
    ]
    assert cli("review", "--json").json()["data"]["pending"] == []
    r = cli("list", "--kind", "fact", "--json")
    assert sorted(m["text"] for m in r.json()["data"]["memories"]) == ["The user lives in Oslo.", "The user works as a nurse."]

    r = cli("review", "approve", "--json")
    assert r.code == 2 and r.json()["error"]["name"] == "USAGE"
    r = cli("review", "edit", "deadbeef", "x", "--json")
    assert r.code == 3 and r.json()["command"] == "review edit"


def test_a_schema_3_store_is_upgraded_in_place(home: Path) -> None:
    mem = Memcli()
    kept = mem.add("Pickle's vet said: ten days of rest").added[0]
    db_file = mem.data_dir / "memcli.sqlite3"
    mem.close()
    storekit.make_schema_3(db_file)
    assert storekit.schema_version(db_file) == 3
    mem = Memcli(settings={("chat", "review"): True, ("chat", "extractor"): "rules"})
    mem.stats()  # opens the store
    assert storekit.schema_version(db_file) == 4
    assert mem.show(kept.id).text == "Pickle's vet said: ten days of rest"
    session(mem).ask(PICKLE)
    assert [f.text for f in mem.review().facts] == [PICKLE_FACT]
    assert mem._ctx.store.catalog.row_counts()["review_pending"] == 1
    mem.close()


def test_server_mode_shares_the_queue_and_a_rejection_leaves_no_text_on_the_server(
    device: Callable[..., Memcli], chroma_server: Any, server_db: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MEMCLI_CHAT_REVIEW", "true")
    monkeypatch.setenv("MEMCLI_CHAT_EXTRACTOR", "rules")
    a = device("a")
    session(a).ask("My dog is called Zanzibarquokka.")
    a.close()
    b = device("b")  # another machine reviews what a learned
    [pending] = b.review().facts
    assert pending.text == "The user's dog is called Zanzibarquokka."
    b.reject([pending.id])
    b.close()
    import chromadb
    from chromadb.config import Settings

    client = chromadb.HttpClient(
        host="127.0.0.1", port=chroma_server.port, database=server_db, settings=Settings(anonymized_telemetry=False)
    )
    names = [c.name for c in client.list_collections() if c.name.startswith("memcli.changelog")]
    docs = [d for n in names for d in client.get_collection(n, embedding_function=None).get(include=["documents"])["documents"]]
    assert any("Zanzibarquokka" in d for d in docs)  # the user's own turn stays: it is the conversation
    assert not any("The user's dog is called Zanzibarquokka" in d for d in docs)
    c = device("c")  # a cache rebuilt from the scrubbed log: nothing pending, the rejection known
    assert c.review().facts == ()
    s = session(c)
    s.ask("My dog is called Zanzibarquokka.")
    assert s.report.changes[-1].action == "dropped" and c.review().facts == ()
