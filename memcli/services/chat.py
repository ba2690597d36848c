"""A chat session that remembers: prompt building under a token budget, episodes, background learning.

The prompt is laid out for llama.cpp's KV cache, stable parts first:

    system = system prompt + persona + profile (a snapshot taken when the session starts)
             + running summary of folded turns (changes only when turns are folded, in blocks)
    the recent turns, oldest first (the window start moves only when turns are folded)
    user   = this message, then the memories recalled for it (or "nothing relevant")

so a new turn re-evaluates only the end of the previous exchange and the new message, not the whole
prompt. The background requests (fact extraction, summarising) continue the same conversation for
the same reason. Everything is counted in the model's tokens and kept under ``[chat] budget_tokens``.

Learning never delays a reply: extraction runs on a worker thread after the reply has been shown;
a new message cancels a running request (it is redone later) and anything left runs at close.
"""

from __future__ import annotations

import queue
import threading
import time
import uuid
from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from memcli.backends.base import ChatMessage, ChatModel
from memcli.context import Context
from memcli.errors import MemcliFailure, config_error, usage_error
from memcli.prompts import chat as prompts
from memcli.records import Hit, Kind, Memory, RecallResult
from memcli.services import chat_prompt as _prompt
from memcli.services import extract as _extract
from memcli.services.profile import profile_text
from memcli.store import NewMemory, embed_input
from memcli.text.intent import Need, asks_about_assistant, memory_need

SUMMARY_MAX_TOKENS = 400


@dataclass
class Turn:
    role: str  # "user" or "assistant"
    text: str
    at: datetime
    tokens: int
    memory_id: str | None = None  # the stored episode (None when not remembering)


@dataclass(frozen=True)
class PromptPlan:
    messages: tuple[ChatMessage, ...]
    parts: dict[str, int]  # tokens per part: system, profile, summary, turns, message, memories
    total: int  # tokens of the whole prompt (<= budget)
    budget: int
    hits: tuple[Hit, ...]  # the memories put in front of the model for this turn
    abstained: bool  # recall found nothing relevant, and the model was told so
    window_start: int  # index of the oldest turn in the prompt
    memory_seconds: float  # time spent recalling and building
    need: Need = Need.FULL  # what the message was judged to need (no memories for small talk)

    def to_json(self) -> dict[str, Any]:
        return {
            "parts": self.parts,
            "total": self.total,
            "budget": self.budget,
            "abstained": self.abstained,
            "need": self.need.value,
            "memories": [h.memory.id for h in self.hits],
        }


@dataclass(frozen=True)
class TurnResult:
    message: str
    reply: str
    interrupted: bool
    plan: PromptPlan
    memory_seconds: float  # recall + prompt + storing the turns (not the model's time)
    stored: tuple[str, ...]  # ids of the episodes written
    ended: bool | None = None  # the model ended its turn itself (False: cut at max tokens; None: unknown)

    def to_json(self) -> dict[str, Any]:
        return {
            "reply": self.reply,
            "interrupted": self.interrupted,
            "ended": self.ended,
            "prompt": self.plan.to_json(),
            "memories_used": [h.to_json() for h in self.plan.hits],
            "stored": list(self.stored),
        }


@dataclass
class SessionReport:
    session: str
    turns: int
    changes: list[_extract.FactChange] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    llm_calls: int = 0
    pending: int = 0  # jobs not done (the session was closed without waiting)

    def to_json(self) -> dict[str, Any]:
        return {
            "session": self.session,
            "turns": self.turns,
            "changes": [c.to_json() for c in self.changes],
            "errors": self.errors,
            "llm_calls": self.llm_calls,
            "pending": self.pending,
        }


class ChatSession:
    # "cache": stable parts first, this turn's memories last (the default, and the point).
    # "memories_first": memories in the system message, as many assistants do; kept only so the
    # benchmark can measure what the cache-friendly layout saves.
    layout = "cache"

    def __init__(
        self,
        ctx: Context,
        model: ChatModel,
        *,
        space: str | None = None,
        remember: bool = True,
        system: str | None = None,
        clock: Callable[[], datetime] | None = None,
        background: bool = True,
    ) -> None:
        self.ctx = ctx
        self.model = model
        self.cs = ctx.settings.chat
        self.space = ctx.space(space)
        self.remember = remember
        self.learn = remember and self.cs.extract
        self.clock = clock or (lambda: datetime.now().astimezone())
        sources = ctx.settings.sources
        self.sampling = _prompt.sampling_for(
            self.cs, lambda key: sources.get(("chat", key), "default") != "default", model.n_params
        )
        if self.cs.budget_tokens + self.sampling.max_tokens > model.n_ctx:
            raise config_error(
                f"[chat] budget_tokens ({self.cs.budget_tokens}) + max_reply_tokens ({self.sampling.max_tokens}) "
                f"exceed the model's context window n_ctx ({model.n_ctx})",
                hint="Lower budget_tokens or max_reply_tokens, or raise [chat] n_ctx.",
            )
        self.last_ended: bool | None = None
        base = system if system is not None else (self.cs.system or prompts.SYSTEM)
        self.system = base + (f"\n\n{self.cs.persona}" if self.cs.persona else "")
        self._count_cache: dict[str, int] = {}
        self.report = SessionReport(session="", turns=0)
        self._jobs: queue.Queue[Callable[[], None] | None] = queue.Queue()
        self._cancel = threading.Event()
        self._busy = threading.Lock()  # held by the worker while it uses the model
        self._mem_lock = threading.RLock()  # recall and memory writes: main thread vs worker
        self._worker: threading.Thread | None = None
        self._stopping = False
        self._profile_dirty = False
        self._background = background
        self._start()

    # -- lifecycle -------------------------------------------------------------------------------
    def _start(self) -> None:
        self.session_id = uuid.uuid4().hex[:12]
        self.report = SessionReport(session=self.session_id, turns=0)
        self.turns: list[Turn] = []
        self.summary = ""
        self.summarised_upto = 0  # turns before this index are in the summary
        self.window_start = 0
        self.last_plan: PromptPlan | None = None
        self._load_profile()

    def current_profile(self) -> tuple[str, tuple[Memory, ...]]:
        """The profile as the next reply will see it."""
        if self._profile_dirty:
            self._load_profile()
        return self.profile, self.profile_memories

    def _load_profile(self) -> None:
        with self._mem_lock:
            self.profile, self.profile_memories = profile_text(self.ctx, self.space, self.cs.profile_tokens, self.count)
            self._profile_dirty = False

    def new(self) -> SessionReport:
        """End this conversation (finishing its background work) and start a fresh one."""
        done = self.close()
        self._start()
        return done

    def close(self, *, wait: bool = True) -> SessionReport:
        """Finish the background work (or, with ``wait=False``, stop it and say how much was left)."""
        if self._worker is not None:
            if not wait:
                self._stopping = True
                self._cancel.set()
                self.report.pending = self._jobs.qsize()
                while not self._jobs.empty():
                    self._jobs.get_nowait()
            else:
                self._cancel.clear()  # nothing is waiting for the model any more
            self._jobs.put(None)
            self._worker.join()
            self._worker = None
            self._cancel.clear()
            self._stopping = False
        return self.report

    def pending(self) -> int:
        return self._jobs.qsize() + (1 if self._busy.locked() else 0)

    # -- one turn --------------------------------------------------------------------------------
    def count(self, text: str) -> int:
        n = self._count_cache.get(text)
        if n is None:
            n = self.model.count_tokens(text)
            if len(self._count_cache) < 4096:
                self._count_cache[text] = n
        return n

    def prepare(self, message: str, *, at: datetime | None = None) -> PromptPlan:
        """Recall for ``message`` and lay out the prompt under the budget."""
        message = message.strip()
        if not message:
            raise usage_error("the message is empty")
        self._cancel.set()  # the model is needed now: background work steps aside
        try:
            return self._prepare(message, at)
        except BaseException:
            self._cancel.clear()
            raise

    def _prepare(self, message: str, at: datetime | None) -> PromptPlan:
        t0 = time.perf_counter()
        if self._profile_dirty:  # something was remembered or forgotten on purpose: the profile follows
            self._load_profile()
        budget = self.cs.budget_tokens
        system = self._system_text()
        fixed = self.count(system) + self.count(message) + 16  # 16: chat-template tokens per message, roughly
        if fixed > budget:
            raise usage_error(
                f"this message needs {fixed} tokens with the system prompt; the budget is {budget}",
                hint="Send a shorter message, or raise [chat] budget_tokens (and n_ctx).",
            )
        need = memory_need(message) if self.cs.memory_need else Need.FULL
        result = self._recall(message, at, need)
        cap = min(self.cs.memory_tokens, budget - fixed - 8)
        before = self.window_start
        block, hits = self._memory_block(result, cap, need, message)
        user = _prompt.user_content(message, block)
        room = budget - self.count(system) - self.count(user) - 16
        start = self._window(room)
        if start != before:  # turns that just left the window may come back as memories
            block, hits = self._memory_block(result, cap, need, message)
            user = _prompt.user_content(message, block)
            start = self._window(budget - self.count(system) - self.count(user) - 16)
        turns = self.turns[start:]
        history = [ChatMessage("user" if t.role == "user" else "assistant", t.text) for t in turns]
        if self.layout == "memories_first":  # the layout the benchmark compares against: cache-hostile
            messages = (ChatMessage("system", f"{system}\n\n{block}".strip()), *history, ChatMessage("user", message))
        else:
            messages = (ChatMessage("system", system), *history, ChatMessage("user", user))
        parts = {
            "system": self.count(self._system_text(profile=False, summary=False)),
            "profile": self.count(self.profile) if self.profile else 0,
            "summary": self.count(self.summary) if self.summary else 0,
            "turns": sum(t.tokens + 8 for t in turns),
            "message": self.count(message),
            "memories": self.count(block) if block else 0,
        }
        total = self.count(system) + parts["turns"] + self.count(user) + 16
        abstained = need is not Need.NONE and not hits
        plan = PromptPlan(messages, parts, total, budget, hits, abstained, start, time.perf_counter() - t0, need)
        self.last_plan = plan
        return plan

    def stream(self, plan: PromptPlan) -> Generator[str, None, None]:
        """The reply, piece by piece. Closing the iterator stops generation (Ctrl-C)."""
        self._cancel.set()
        self.last_ended = None
        sp = self.sampling
        try:
            with self._busy:  # wait for a background request to notice the cancel and let go
                yield from self.model.stream(
                    plan.messages, max_tokens=sp.max_tokens, temperature=sp.temperature, top_p=sp.top_p,
                    repeat_penalty=sp.repeat_penalty,
                )  # fmt: skip
                finish = self.model.last_finish
                self.last_ended = None if finish is None else finish == "stop"
        finally:
            self._cancel.clear()  # background work may use the model again

    def finish(
        self, message: str, reply: str, plan: PromptPlan, *, interrupted: bool = False, at: datetime | None = None
    ) -> TurnResult:
        """Record the exchange: in the conversation, as episodes (unless incognito), and queue learning."""
        t0 = time.perf_counter()
        self._cancel.clear()  # the reply is done (or was made elsewhere): background work may use the model
        at = at or self.clock()
        message = message.strip()
        reply = reply.strip() + (" [interrupted]" if interrupted and reply.strip() else "")
        user_turn = Turn("user", message, at, self.count(message))
        turns = [user_turn]
        if reply:
            turns.append(Turn("assistant", reply, at, self.count(reply)))
        stored: list[str] = []
        if self.remember:
            with self._mem_lock:
                stored = self._store_episodes(turns, len(self.turns))
            for t, mid in zip(turns, stored):
                t.memory_id = mid
        self.turns += turns
        self.report.turns += 1
        if self.learn:
            ex = _extract.Exchange(self.session_id, len(self.turns) - len(turns), message, reply, at, user_turn.memory_id)
            conversation = (*plan.messages[:-1], ChatMessage("user", message), ChatMessage("assistant", reply))
            job = _extract.ExtractJob(self.ctx, self.model, conversation, ex, self.space)
            self._submit(lambda: self._learn(job))
        if self.window_start > self.summarised_upto:
            upto = self.window_start
            self._submit(lambda: self._summarise(upto))
        ended = None if interrupted else self.last_ended
        return TurnResult(
            message, reply, interrupted, plan, plan.memory_seconds + time.perf_counter() - t0, tuple(stored), ended
        )

    def ask(self, message: str, *, at: datetime | None = None) -> TurnResult:
        """One whole turn without streaming (for scripts and tests)."""
        plan = self.prepare(message, at=at)
        reply = "".join(self.stream(plan))
        return self.finish(message, reply, plan, at=at)

    # -- slash-command helpers ------------------------------------------------------------------
    def remember_text(self, text: str) -> _extract.FactChange:
        """/remember: the user states a fact directly; it is reconciled like an extracted one."""
        text = " ".join(text.split())
        if not text:
            raise usage_error("nothing to remember", hint="Use /remember TEXT.")
        with self._mem_lock:
            vec = self.ctx.embedder.embed_documents([text])[0]
            ex = _extract.Exchange(self.session_id, len(self.turns), text, "", self.clock(), None)
            change, _ = _extract.reconcile(
                self.ctx, None, (), text, vec, kind_tag="fact", valid_from=None, ex=ex, space=self.space
            )
        self.report.changes.append(change)
        self._profile_dirty = True
        return change

    def forget(self, phrase: str) -> list[_extract.FactChange]:
        if not phrase.strip():
            raise usage_error("say what to forget", hint="Use /forget WHAT, e.g. /forget my old address.")
        with self._mem_lock:
            changes = _extract.forget_matching(self.ctx, phrase, space=self.space)
        self.report.changes += changes
        self._profile_dirty = True
        return changes

    def recall(self, query: str) -> RecallResult:
        from memcli.services.recall import recall

        with self._mem_lock:
            return recall(self.ctx, query, space=self.space, now=self.clock())

    # -- internals -------------------------------------------------------------------------------
    def _system_text(self, *, profile: bool = True, summary: bool = True) -> str:
        parts = [self.system]
        if profile and self.profile:
            parts.append(f"{prompts.PROFILE_HEADER}\n{self.profile}")
        if summary and self.summary:
            parts.append(f"{prompts.SUMMARY_HEADER}\n{self.summary}")
        return "\n\n".join(parts)

    def _recall(self, message: str, at: datetime | None, need: Need) -> RecallResult | None:
        from memcli.services.recall import recall

        if need is Need.NONE:
            return None  # small talk: memories would only distract (and cost prompt evaluation)
        with self._mem_lock:
            if not self.ctx.store.catalog.spaces().get(self.space):
                return None  # an empty memory: nothing to recall
            # Twice what can be shown: turns already in the window and the assistant's replies are left out.
            k = 2 * (self.cs.recall_k if need is Need.FULL else self.cs.statement_k) + 4
            return recall(self.ctx, message, space=self.space, k=k, now=at or self.clock(), touch=self.remember)

    def _memory_block(self, result: RecallResult | None, cap: int, need: Need, message: str) -> tuple[str, tuple[Hit, ...]]:
        hits: list[Hit] = []
        if result is not None and not result.abstained:
            # Turns already in the prompt are not repeated; the assistant's own earlier replies are not
            # evidence about the user (only shown when the message asks what the assistant said).
            shown = {t.memory_id for t in self.turns[self.window_start :] if t.memory_id}
            about_me = asks_about_assistant(message)
            hits = [
                h for h in result.hits
                if h.memory.id not in shown and (about_me or not _prompt.is_assistant_turn(h.memory))
            ]  # fmt: skip
        max_n = self.cs.recall_k if need is Need.FULL else self.cs.statement_k
        kept = _prompt.pack(hits, cap, max_n, self.count)
        return _prompt.memory_block(kept, need), tuple(sorted(kept, key=lambda h: h.rank))

    def _window(self, room: int) -> int:
        """The oldest turn in the prompt. It stays put until the turns overflow ``room``; then it jumps
        so that the kept turns fill half of it (folding in blocks keeps the prompt prefix stable)."""

        def size(start: int) -> int:
            return sum(t.tokens + 8 for t in self.turns[start:])

        start = self.window_start
        if size(start) > room:
            while start < len(self.turns) and size(start) > room // 2:
                start += 1
            while start < len(self.turns) and self.turns[start].role != "user":
                start += 1  # keep exchanges whole: a window starts with the user's turn
            while start < len(self.turns) and size(start) > room:
                start += 1
            self.window_start = start
        return start

    def _store_episodes(self, turns: Sequence[Turn], first: int) -> list[str]:
        emb = self.ctx.embedder
        items = []
        for i, t in enumerate(turns):
            speaker = "user" if t.role == "user" else "assistant"
            text = f"{speaker}: {t.text}"
            keys = t.at.strftime("%A %d %B %Y")
            items.append(
                (
                    NewMemory(
                        text=text, kind=Kind.EPISODE, source=f"chat:{self.session_id}", position=first + i,
                        event_at=t.at.timestamp(), recorded_at=t.at.timestamp(), tags=("chat", speaker), keys=keys,
                        importance=0.5 if t.role == "user" else 0.3,
                    ),
                    emb.embed_documents([embed_input(text, keys)])[0],
                )
            )  # fmt: skip
        return self.ctx.store.add(self.space, items, emb.model_id)

    # -- background work -------------------------------------------------------------------------
    def _submit(self, job: Callable[[], None]) -> None:
        if not self._background:
            job()
            return
        if self._worker is None:
            self._worker = threading.Thread(target=self._run, name="memcli-learn", daemon=True)
            self._worker.start()
        self._jobs.put(job)

    def _run(self) -> None:
        while True:
            job = self._jobs.get()
            if job is None:
                return
            while True:
                while self._cancel.is_set():
                    if self._stopping:
                        return
                    time.sleep(0.05)  # a reply is being prepared or streamed: it has the model
                with self._busy:
                    if self._cancel.is_set():
                        continue
                    try:
                        job()
                    except _extract.Cancelled:
                        continue  # resumes where it stopped once the reply is done
                    except Exception as e:  # a failed job must not end the session's learning
                        self.report.errors.append(f"{type(e).__name__}: {e}")
                    break

    def _learn(self, job: _extract.ExtractJob) -> None:
        # Holding the memory lock through the LLM call is fine: a new message sets the cancel event
        # before it waits for this lock, and the backend stops generating when it sees that.
        with self._mem_lock:
            report = job.run(self._cancel)
            self.report.changes += report.changes
            if any(c.action == "forgotten" and c.memory_id for c in report.changes):
                self._profile_dirty = True  # a forgotten fact must leave the prompt too
            self.report.llm_calls += report.llm_calls
            if report.error:
                self.report.errors.append(f"extraction of turn {job.ex.turn}: {report.error} (kept for `memcli doctor`)")

    def _summarise(self, upto: int) -> None:
        if upto <= self.summarised_upto:
            return
        words = max(20, int(self.cs.summary_tokens * 0.6))
        messages = [
            ChatMessage("system", self._system_text()),
            *(ChatMessage("user" if t.role == "user" else "assistant", t.text) for t in self.turns[self.summarised_upto : upto]),
            ChatMessage("user", prompts.SUMMARISE.format(words=words)),
        ]
        try:
            answer = _extract.ask_json(
                self.ctx, self.model, messages, prompts.SUMMARY_SCHEMA, operation="summarise",
                source=f"chat:{self.session_id}", max_tokens=SUMMARY_MAX_TOKENS, cancel=self._cancel,
            )  # fmt: skip
        except (ValueError, MemcliFailure) as e:  # an invalid answer, or a backend that cannot do it
            self.report.errors.append(f"summary: {getattr(e, 'message', e)}")
            self.summarised_upto = upto  # the turns stay recallable as episodes; not asked again for them
            return
        self.report.llm_calls += 1
        self.summary = _truncate(answer["summary"].strip(), self.cs.summary_tokens, self.count)
        self.summarised_upto = upto


def _truncate(text: str, max_tokens: int, count: Callable[[str], int]) -> str:
    if count(text) <= max_tokens:
        return text
    words = text.split()
    lo, hi = 0, len(words)
    while lo < hi:  # the longest prefix of words that fits
        mid = (lo + hi + 1) // 2
        if count(" ".join(words[:mid])) <= max_tokens:
            lo = mid
        else:
            hi = mid - 1
    return " ".join(words[:lo])
