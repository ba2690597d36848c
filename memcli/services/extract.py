"""Learning from a conversation: facts about the user, extracted by the LLM and reconciled with memory.

Mem0's loop (extract, then compare each fact with similar memories and add / update / do nothing),
with three changes that small local models need:

* every LLM answer is grammar-constrained *and* validated; an answer that fails is quarantined
  (``memcli doctor`` lists it) and changes nothing — a bad answer never costs or destroys a fact;
* the cheap cases skip the LLM: nothing similar → new; a near-identical memory → duplicate. Only the
  ambiguous middle asks the model (refine / supersede / new / duplicate);
* a contradicted fact is retired with the time it stopped being true and linked to its successor
  (Zep/Graphiti), never deleted; a refined one is retired in favour of the merged statement.

Only the user's words are a source of facts: the extraction request asks for the user's last message,
a fact that restates the assistant's reply more than the user's message is dropped, and every fact
must pass ``grounding.check`` against the user's message (names, numbers and most words present, no
flipped negation) or it is dropped and kept in the quarantine as "ungrounded" for ``memcli doctor``.
Small models (under 1B parameters) do not extract at all by default: their facts are mostly invented,
so ``[chat] extractor = "auto"`` turns the user's first-person statements into facts by rule instead.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from memcli.backends.base import ChatMessage, ChatModel
from memcli.context import Context
from memcli.prompts import chat as prompts
from memcli.records import Kind, Memory
from memcli.services import grounding
from memcli.services.chat_prompt import SMALL_MODEL_PARAMS
from memcli.store import NewMemory, ReviewQueue, Succession, blob_to_vec, content_hash, fingerprint
from memcli.text.statements import first_person_statements
from memcli.text.timequery import parse_time_hint

ASSISTANT_MARGIN = 0.05  # a fact closer to the assistant's words than the user's by this much is theirs
EXTRACT_MAX_TOKENS = 384
RECONCILE_MAX_TOKENS = 160
FORGET_MAX = 10  # memories one "forget that ..." may trash: a vague phrase must not empty the store


class Cancelled(Exception):
    """The model was needed for a reply: the job is put back and runs later."""


@dataclass(frozen=True)
class Exchange:
    session: str  # chat session id; memories it yields have source chat:SESSION
    turn: int  # position of the user's message in the session
    user: str
    assistant: str  # the reply: context only, never a source of facts
    at: datetime
    episode_id: str | None  # the stored user turn, linked from the facts it yields
    explicit: bool = False  # /remember: the user asked for these words to be kept, so they are not reviewed


@dataclass(frozen=True)
class FactChange:
    action: str  # added, refined, superseded, duplicate, forgotten, dropped
    text: str
    memory_id: str | None = None  # the memory written (or forgotten)
    target_id: str | None = None  # the existing memory it refines/supersedes/duplicates
    reason: str = ""
    pending_review: bool = False  # [chat] review: written to the review queue; memory_id is its id there

    def to_json(self) -> dict[str, Any]:
        return {
            "action": self.action,
            "text": self.text,
            "memory_id": self.memory_id,
            "target_id": self.target_id,
            "reason": self.reason,
            "pending_review": self.pending_review,
        }


@dataclass(frozen=True)
class ExtractionReport:
    changes: tuple[FactChange, ...]
    error: str | None = None  # the model's answer failed to parse/validate (it was quarantined)
    llm_calls: int = 0


def parse_answer(raw: str, schema: dict[str, Any]) -> dict[str, Any]:
    """The model's JSON answer, validated against ``schema``; ValueError says what is wrong."""
    import jsonschema

    try:
        value = json.loads(raw)
    except json.JSONDecodeError as e:
        raise ValueError(f"not JSON: {e.msg} at character {e.pos}") from None
    try:
        jsonschema.validate(value, schema)
    except jsonschema.ValidationError as e:
        where = "/".join(str(p) for p in e.absolute_path) or "the answer"
        raise ValueError(f"does not match the schema at {where}: {e.message}") from None
    if not isinstance(value, dict):  # the schemas are objects; this keeps mypy honest
        raise ValueError("not a JSON object")
    return value


def ask_json(
    ctx: Context,
    model: ChatModel,
    messages: Sequence[ChatMessage],
    schema: dict[str, Any],
    *,
    operation: str,
    source: str,
    max_tokens: int,
    cancel: threading.Event | None = None,
) -> dict[str, Any]:
    """One constrained LLM call, validated. A failed answer is quarantined and raised as ValueError."""
    if cancel is not None and cancel.is_set():
        raise Cancelled
    raw = model.complete_json(messages, schema, max_tokens=max_tokens, cancel=cancel)
    if cancel is not None and cancel.is_set():
        raise Cancelled  # cut short because a reply needs the model: asked again later
    try:
        return parse_answer(raw, schema)
    except ValueError as e:
        ctx.store.quarantine(operation, source, str(e), raw)
        raise


def _cos(a: Sequence[float], b: Sequence[float]) -> float:
    return float(sum(x * y for x, y in zip(a, b)))  # vectors are L2-normalised


def _words(text: str) -> set[str]:
    from memcli.store import STOPWORDS

    return {w.rstrip("s") for w in re.findall(r"\w+", text.lower()) if w not in STOPWORDS and w not in ("user", "user's")}


def _assistants(text: str, vector: Sequence[float], ex: Exchange, user_v: Sequence[float], asst_v: Sequence[float]) -> bool:
    """Is this "fact" the assistant's claim rather than the user's? Both signals must agree: it is closer
    in meaning to the reply than to the user's message, and most of its words come from the reply only
    (a fact the user stated shares their words even when the reply repeats them: "Nice to meet you, Noor")."""
    if _cos(vector, asst_v) <= _cos(vector, user_v) + ASSISTANT_MARGIN:
        return False
    words, said, replied = _words(text), _words(ex.user), _words(ex.assistant)
    return len((words & replied) - said) > len(words & said)


_FORGET_VERB = re.compile(r"\b(forget|delete|erase|remove|wipe|unlearn|don'?t (?:remember|keep))\b", re.IGNORECASE)


_FORGET_WHAT = re.compile(
    r"\b(?:forget|delete|erase|remove|unlearn)\b\s+(?:(?:that|about|what i (?:said|told you) about|the fact that)\s+)?(.+)",
    re.IGNORECASE,
)


def forget_request(user: str) -> str | None:
    """What a "forget that ..." message asks to forget (rules: no model needed), or None."""
    m = _FORGET_WHAT.search(user)
    return m.group(1).strip(" .!") if m and len(m.group(1).strip(" .!")) >= 3 else None


def uses_rules(ctx: Context, model: ChatModel | None) -> bool:
    """Extract by rule (``[chat] extractor``): "auto" does for models under 1B parameters."""
    choice = ctx.settings.chat.extractor
    if choice != "auto":
        return choice == "rules"
    return model is not None and model.n_params is not None and model.n_params < SMALL_MODEL_PARAMS


def rule_answer(user: str, at: datetime) -> dict[str, Any]:
    """The extraction answer the rules give for a user message (same shape as the model's)."""
    forget = forget_request(user)
    if forget is not None:
        return {"facts": [], "forget": [forget]}
    facts = []
    for st in first_person_statements(user):
        hint = parse_time_hint(st.source, at) if st.kind == "event" else None
        when = hint.since.date().isoformat() if hint is not None and hint.since is not None and not hint.soft else ""
        facts.append({"text": st.text, "type": st.kind, "when": when})
    return {"facts": facts, "forget": []}


def asked_to_forget(user: str, phrase: str) -> bool:
    """Did the user's message ask to forget, and is ``phrase`` about something the message names?"""
    return bool(_FORGET_VERB.search(user)) and bool(_words(phrase) & _words(user))


def _when(value: str) -> float | None:
    try:
        return datetime.fromisoformat(value).astimezone().timestamp() if value else None
    except ValueError:
        return None  # a small model's odd date is not worth losing the fact over


class ExtractJob:
    """Extract what the user's last message says about them and reconcile it with memory.

    Resumable: when a reply needs the model (``Cancelled``), running the job again continues where it
    stopped — the answer already parsed and the facts already applied are not redone.
    ``conversation`` is the prompt the reply was generated from followed by the reply, so the request
    shares its prefix (llama.cpp reuses the cached evaluation)."""

    def __init__(self, ctx: Context, model: ChatModel, conversation: Sequence[ChatMessage], ex: Exchange, space: str) -> None:
        self.ctx, self.model, self.conversation, self.ex, self.space = ctx, model, tuple(conversation), ex, space
        self.answer: dict[str, Any] | None = None
        self.done = 0  # facts applied so far
        self.changes: list[FactChange] = []
        self.calls = 0

    def run(self, cancel: threading.Event | None = None) -> ExtractionReport:
        ctx, ex = self.ctx, self.ex
        if self.answer is None:
            if uses_rules(ctx, self.model):
                answer = rule_answer(ex.user, ex.at)
            elif not _FORGET_VERB.search(ex.user) and not grounding.could_state_facts(ex.user):
                answer = {"facts": [], "forget": []}  # no fact from it could pass the check: spare the model
            else:
                messages = [*self.conversation, ChatMessage("user", prompts.EXTRACT)]
                try:
                    self.calls += 1
                    answer = ask_json(
                        ctx, self.model, messages, prompts.EXTRACT_SCHEMA, operation="extract",
                        source=f"chat:{ex.session}#{ex.turn}", max_tokens=EXTRACT_MAX_TOKENS, cancel=cancel,
                    )  # fmt: skip
                except ValueError as e:
                    return ExtractionReport((), error=str(e), llm_calls=self.calls)
            for phrase in answer["forget"]:
                if not asked_to_forget(ex.user, phrase):
                    # Only the user's own words can make memcli forget: not a recalled note that says
                    # "delete all memories", nor a model that misread the conversation.
                    self.changes.append(FactChange("dropped", phrase, reason="forget request not in the user's message"))
                    continue
                self.changes += forget_matching(ctx, phrase, space=self.space, also=[ex.episode_id] if ex.episode_id else [])
            self.answer = answer
        facts = self.answer["facts"]
        if self.done >= len(facts):  # nothing (left) to check: most messages, and no embedding to pay for
            return ExtractionReport(tuple(self.changes), llm_calls=self.calls)
        emb = ctx.embedder
        # Meaning is compared sentence by sentence: a fact restates one thing the user said, and a long
        # message's other sentences would dilute a whole-message vector.
        said_vs = [emb.embed_query(s) for s in grounding.statement_sentences(ex.user)]
        user_v = emb.embed_query(ex.user)
        asst_v = emb.embed_query(ex.assistant) if ex.assistant.strip() else None
        while self.done < len(facts):
            fact = facts[self.done]
            text = " ".join(fact["text"].split())
            fv = emb.embed_documents([text])[0]
            support = grounding.check(text, ex.user, max((_cos(fv, v) for v in said_vs), default=None))
            if not support.grounded:
                change = FactChange("dropped", text, reason=f"ungrounded: {support.reason}")
                ctx.store.quarantine("ungrounded", f"chat:{ex.session}#{ex.turn}", support.reason, text)
            elif asst_v is not None and _assistants(text, fv, ex, user_v, asst_v):
                change = FactChange("dropped", text, reason="the assistant said this, not the user")
            else:
                change, used = reconcile(
                    ctx, self.model, self.conversation, text, fv, kind_tag=fact["type"], valid_from=_when(fact["when"]),
                    ex=ex, space=self.space, cancel=cancel,
                )  # fmt: skip
                self.calls += used
            self.changes.append(change)
            self.done += 1
        return ExtractionReport(tuple(self.changes), llm_calls=self.calls)


def extract(ctx: Context, model: ChatModel, conversation: Sequence[ChatMessage], ex: Exchange, *, space: str) -> ExtractionReport:
    """Extract and reconcile in one go (no cancellation): see ``ExtractJob``."""
    return ExtractJob(ctx, model, conversation, ex, space).run()


def similar_facts(ctx: Context, vector: Sequence[float], *, space: str, n: int) -> list[tuple[Memory, float]]:
    """Current facts most similar to ``vector``, best first, with their cosine similarity.

    The search is restricted to the ids of current facts: a topic that changed many times has many
    closed facts, and those, being the most similar, used to fill the top hits and hide the one
    current fact -- which then stayed current beside its contradiction."""
    current = ctx.store.catalog.current_fact_ids(space)
    hits = ctx.store.index.query(space, list(vector), n, ids=current)
    found = ctx.store.catalog.by_ids(h.id for h in hits)
    out = [(found[h.id], h.similarity) for h in hits if h.id in found]
    return [(m, s) for m, s in out if m.state == "active" and m.current][:n]


def reconcile(
    ctx: Context,
    model: ChatModel | None,
    conversation: Sequence[ChatMessage],
    text: str,
    vector: Sequence[float],
    *,
    kind_tag: str,
    valid_from: float | None,
    ex: Exchange | None,
    space: str,
    cancel: threading.Event | None = None,
) -> tuple[FactChange, int]:
    """Add ``text`` as a fact, or merge it with what is known. Returns the change and the LLM calls made.
    With ``[chat] review`` a learned fact (not /remember's) goes to the review queue instead, with what it
    would replace (``FactChange.pending_review``)."""
    store = ctx.store
    same = store.catalog.by_hash(space, content_hash(text))
    if same is not None and same.current:
        return FactChange("duplicate", text, target_id=same.id, reason="already remembered word for word"), 0
    if ex is not None and not ex.explicit:
        # Before the model is asked anything: a rejection stands whether review is on now or not.
        queue = ReviewQueue(store)
        rejected = queue.was_rejected(space, fact=text, said=fingerprint(ex.user))
        if rejected is not None:
            why = "these words" if rejected == "fact" else "a fact from the same message"
            return FactChange("dropped", text, reason=f"rejected before ({why} was rejected in review)"), 0
        waiting = queue.pending_with_text(space, text)
        if waiting is not None:
            return FactChange("duplicate", text, target_id=waiting.id, reason="already waiting for review"), 0
    change, calls = _reconcile(
        ctx, model, conversation, text, vector, kind_tag=kind_tag, valid_from=valid_from, ex=ex, space=space, cancel=cancel
    )
    if _reviewed(ctx, ex) and change.action in ("added", "refined", "superseded"):
        change = replace(change, pending_review=True)
    return change, calls


def _reviewed(ctx: Context, ex: Exchange | None) -> bool:
    """Does a fact learned from ``ex`` wait for the user's review (``[chat] review``)?"""
    return ctx.settings.chat.review and ex is not None and not ex.explicit


def _reconcile(
    ctx: Context,
    model: ChatModel | None,
    conversation: Sequence[ChatMessage],
    text: str,
    vector: Sequence[float],
    *,
    kind_tag: str,
    valid_from: float | None,
    ex: Exchange | None,
    space: str,
    cancel: threading.Event | None,
) -> tuple[FactChange, int]:
    cs = ctx.settings.chat
    similar = similar_facts(ctx, vector, space=space, n=cs.similar_facts)
    if similar and similar[0][1] >= cs.duplicate_similarity:
        m, s = similar[0]
        return FactChange("duplicate", text, target_id=m.id, reason=f"near-identical to a known fact ({s:.2f})"), 0
    related = [(m, s) for m, s in similar if s >= cs.related_similarity]
    corrected = _corrected(text, [m for m, _ in related])
    if corrected is not None:  # "..., not Paris" and a related fact says Paris: the user corrected it
        until = _until(valid_from, ex)
        new = _add_fact(ctx, text, vector, kind_tag, valid_from, ex, space, Succession(corrected, until, "supersede"))
        return FactChange("superseded", text, new.memory_id, corrected.id, reason=f"corrects: {corrected.text}"), 0
    if not related or model is None:
        return _add_fact(ctx, text, vector, kind_tag, valid_from, ex, space), 0
    listing = "\n".join(f"{i}. {m.text}" for i, (m, _) in enumerate(related, 1))
    ask = prompts.RECONCILE.format(new=text, candidates=listing)
    source = f"chat:{ex.session}#{ex.turn}" if ex else "reconcile"
    try:
        answer = ask_json(
            ctx, model, [*conversation, ChatMessage("user", ask)], prompts.RECONCILE_SCHEMA, operation="reconcile",
            source=source, max_tokens=RECONCILE_MAX_TOKENS, cancel=cancel,
        )  # fmt: skip
    except ValueError as e:
        # Keep the fact rather than lose it: adding is the one action that destroys nothing.
        change = _add_fact(ctx, text, vector, kind_tag, valid_from, ex, space)
        return FactChange("added", text, change.memory_id, reason=f"model's decision unusable ({e}); kept as new"), 1
    action, target = answer["action"], answer["target"]
    if action != "new" and not 1 <= target <= len(related):
        change = _add_fact(ctx, text, vector, kind_tag, valid_from, ex, space)
        return FactChange("added", text, change.memory_id, reason=f"model named no valid target ({target}); kept as new"), 1
    old = related[target - 1][0] if action != "new" else None
    if action == "duplicate" and old is not None:
        return FactChange("duplicate", text, target_id=old.id, reason="the model judged it already known"), 1
    if action == "refine" and old is not None:
        merged = " ".join(answer["text"].split()) or text
        if ex is not None and not grounding.supported_by(merged, f"{old.text} {grounding.statements_of(ex.user)}").grounded:
            merged = text  # the model's merge says more than the user and the old fact did: keep the user's words
        mv = vector if merged == text else ctx.embedder.embed_documents([merged])[0]
        new = _add_fact(ctx, merged, mv, kind_tag, valid_from, ex, space, Succession(old, None, "refine"))
        return FactChange("refined", merged, new.memory_id, old.id), 1
    if action == "supersede" and old is not None:
        until = _until(valid_from, ex)
        new = _add_fact(ctx, text, vector, kind_tag, valid_from, ex, space, Succession(old, until, "supersede"))
        return FactChange("superseded", text, new.memory_id, old.id, reason=f"replaces: {old.text}"), 1
    return _add_fact(ctx, text, vector, kind_tag, valid_from, ex, space), 1


def _until(valid_from: float | None, ex: Exchange | None) -> float | None:
    """When a superseded fact stopped being true: when its successor became true, else when it was said."""
    return valid_from if valid_from is not None else (ex.at.timestamp() if ex else None)


_NOT_VALUE = re.compile(r"\bnot (?:the |a |an |in |at |on )?((?:[A-Z][\w'-]*|'?\d[\d.,:']*)(?: [A-Z][\w'-]*)*)")


def _corrected(text: str, related: Sequence[Memory]) -> Memory | None:
    """The related fact a correction replaces: the new fact says "X, not Y" with Y a name or a number,
    and exactly one related fact holds Y. Needs no model, so it works with the smallest ones."""
    values = [v.strip("'").rstrip(".,:").lower() for v in _NOT_VALUE.findall(text)]
    if not values:
        return None
    hits = [m for m in related if any(re.search(rf"(?<!\w)'?{re.escape(v)}(?!\w)", m.text.lower()) for v in values)]
    return hits[0] if len(hits) == 1 else None


def _add_fact(
    ctx: Context,
    text: str,
    vector: Sequence[float],
    kind_tag: str,
    valid_from: float | None,
    ex: Exchange | None,
    space: str,
    succeeds: Succession | None = None,
) -> FactChange:
    """Add one fact; what it replaces is retired and its source turn linked in the same transaction."""
    store = ctx.store
    at = ex.at.timestamp() if ex else None
    item = NewMemory(
        text=text,
        kind=Kind.FACT,
        source=f"chat:{ex.session}" if ex else "chat",
        position=ex.turn if ex else None,
        event_at=valid_from if valid_from is not None else at,
        valid_from=valid_from if valid_from is not None else at,
        tags=(kind_tag,),
        importance=0.7,
        recorded_at=at,
    )
    if _reviewed(ctx, ex):
        assert ex is not None
        pid = ReviewQueue(store).hold(
            space, item, list(vector), ctx.embedder.model_id, succeeds=succeeds, derived_from=ex.episode_id,
            said=fingerprint(ex.user),
        )  # fmt: skip
        return FactChange("added", text, pid, pending_review=True)
    links = [(ex.episode_id, "derived_from")] if ex is not None and ex.episode_id else []
    [mid] = store.apply(space, [(item, list(vector))], ctx.embedder.model_id, succeeds=succeeds, links=links)
    return FactChange("added", text, mid)


def forget_matching(ctx: Context, phrase: str, *, space: str, also: Sequence[str] = ()) -> list[FactChange]:
    """Honour "forget that ...": trash (restorably) the facts and conversation turns that say it, and
    the turns in ``also`` (the request itself, which repeats what is to be forgotten)."""
    cs = ctx.settings.chat
    store = ctx.store
    qv = ctx.embedder.embed_query(phrase)
    hits = store.index.query(space, qv, 20, kinds=(Kind.FACT.value, Kind.EPISODE.value, Kind.PROFILE.value))
    found = store.catalog.by_ids([h.id for h in hits if h.similarity >= cs.forget_similarity][:FORGET_MAX])
    doomed = [m for m in found.values() if m.state == "active" and (m.kind != Kind.EPISODE or m.source.startswith("chat:"))]
    extra = [m for m in store.catalog.by_ids(also).values() if m.state == "active" and m.id not in found]
    store.trash([*doomed, *extra], reason="forget that")
    out = [FactChange("forgotten", m.text, m.id, reason=f"asked to forget: {phrase}") for m in doomed]
    # Facts waiting for review are in no index: compared here. Rejected, so no later approval keeps them.
    queue = ReviewQueue(store)
    held = [
        r for r in queue.pending_facts(space)
        if r.embed_model == ctx.embedder.model_id and _cos(qv, blob_to_vec(r.embedding)) >= cs.forget_similarity
    ][:FORGET_MAX]  # fmt: skip
    queue.reject_pending(held)
    out += [FactChange("forgotten", r.text, r.id, reason=f"asked to forget: {phrase}", pending_review=True) for r in held]
    return out or [FactChange("forgotten", phrase, reason="nothing remembered matched")]
