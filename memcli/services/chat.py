"""A chat session that remembers: one call per turn, ``turn`` (the reply streamed to a callback, for
the CLI) or ``ask`` (the reply returned, for scripts).

The session holds what needs the store and the model: the conversation's turns, the profile, recall
and the reply. How the prompt is laid out under the token budget is ``chat_prompt`` (pure); what is
learned from the conversation, in the background, is ``chat_learner``.

A turn is three steps, public for the benchmarks that time or replace one of them: ``prepare``
(recall, then plan the prompt), ``stream`` (the reply, piece by piece), ``finish`` (record the exchange
and queue the learning). Callers that just talk use ``turn`` or ``ask``.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Generator
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from memcli.backends.base import ChatMessage, ChatModel
from memcli.context import Context
from memcli.errors import config_error, usage_error
from memcli.prompts import chat as prompts
from memcli.records import Memory, RecallResult
from memcli.services import chat_prompt as _prompt
from memcli.services import extract as _extract
from memcli.services.chat_learner import Learner, SessionReport
from memcli.services.chat_prompt import Layout, PromptPlan, Turn
from memcli.services.profile import profile_text
from memcli.text.intent import Need, memory_need

__all__ = ["ChatSession", "PromptPlan", "SessionReport", "Turn", "TurnResult"]


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


class ChatSession:
    # "cache": stable parts first, this turn's memories last (the default, and the point).
    # "memories_first": memories in the system message, as many assistants do; kept only so the
    # benchmark can measure what the cache-friendly layout saves.
    layout: Layout = "cache"

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
        self._profile_dirty = False
        self._learner = Learner(
            ctx, model, space=self.space, count=self.count, summary_tokens=self.cs.summary_tokens,
            on_forgotten=self._profile_changed, background=background,
        )  # fmt: skip
        self._start()

    # -- lifecycle -------------------------------------------------------------------------------
    def _start(self) -> None:
        self.session_id = uuid.uuid4().hex[:12]
        self._learner.start(self.session_id)
        self.turns: list[Turn] = []
        self.window_start = 0  # the oldest turn in the prompt; turns before it are summarised
        self.last_plan: PromptPlan | None = None
        self._load_profile()

    @property
    def about_model(self) -> str | None:
        """What the model is good for and how to move on, when it is the starter model (else None)."""
        from memcli.models.starter import ABOUT, STARTER_FILE

        return f"this is {ABOUT}" if self.model.model_id == STARTER_FILE else None

    @property
    def report(self) -> SessionReport:
        """What this conversation taught memcli so far."""
        return self._learner.report

    @property
    def summary(self) -> str:
        """The running summary of the turns that left the prompt."""
        return self._learner.summary

    @property
    def summarised_upto(self) -> int:
        return self._learner.summarised_upto

    def current_profile(self) -> tuple[str, tuple[Memory, ...]]:
        """The profile as the next reply will see it."""
        if self._profile_dirty:
            self._load_profile()
        return self.profile, self.profile_memories

    def _load_profile(self) -> None:
        with self._learner.lock:
            self.profile, self.profile_memories = profile_text(self.ctx, self.space, self.cs.profile_tokens, self.count)
            self._profile_dirty = False

    def _profile_changed(self) -> None:
        self._profile_dirty = True  # something was remembered or forgotten on purpose: the profile follows

    def new(self) -> SessionReport:
        """End this conversation (finishing its background work) and start a fresh one."""
        done = self.close()
        self._start()
        return done

    def close(self, *, wait: bool = True) -> SessionReport:
        """Finish the background work (or, with ``wait=False``, stop it and say how much was left)."""
        if wait:
            self._learner.drain()
        else:
            self.report.pending += self._learner.close()
        return self.report

    def pending(self) -> int:
        """Learning jobs queued or running."""
        return self._learner.pending()

    # -- one turn --------------------------------------------------------------------------------
    def turn(self, message: str, *, on_token: Callable[[str], None] | None = None, at: datetime | None = None) -> TurnResult:
        """One whole turn, the reply handed to ``on_token`` piece by piece as the model writes it.

        Ctrl-C (KeyboardInterrupt) while the reply streams, in the model or in ``on_token``, stops the
        reply but not the turn: generation stops and the exchange is recorded with the reply as far as
        it got, marked " [interrupted]" (``TurnResult.interrupted``). A Ctrl-C while recalling or while
        storing propagates; storing is one atomic write, so the store is then as it was."""
        plan = self.prepare(message, at=at)
        pieces: list[str] = []
        interrupted = False
        reply = self.stream(plan)
        try:
            for piece in reply:
                pieces.append(piece)
                if on_token is not None:
                    on_token(piece)
        except KeyboardInterrupt:
            interrupted = True
        finally:
            reply.close()  # stops generation and hands the model back to the learner
        return self.finish(message, "".join(pieces), plan, interrupted=interrupted, at=at)

    def ask(self, message: str, *, at: datetime | None = None) -> TurnResult:
        """One whole turn without streaming (scripts, tests, ``--json``). A KeyboardInterrupt is not
        caught: it stops the caller, and the turn is not recorded."""
        plan = self.prepare(message, at=at)
        return self.finish(message, "".join(self.stream(plan)), plan, at=at)

    def count(self, text: str) -> int:
        n = self._count_cache.get(text)
        if n is None:
            n = self.model.count_tokens(text)
            if len(self._count_cache) < 4096:
                self._count_cache[text] = n
        return n

    def prepare(self, message: str, *, at: datetime | None = None) -> PromptPlan:
        """Step 1 of a turn: recall for ``message`` and plan the prompt under the budget. Background
        learning steps aside from now until ``finish``."""
        message = message.strip()
        if not message:
            raise usage_error("the message is empty")
        self._learner.step_aside()  # before recall: the worker holds the memory lock while it asks the model
        try:
            return self._prepare(message, at)
        except BaseException:
            self._learner.resume()
            raise

    def _prepare(self, message: str, at: datetime | None) -> PromptPlan:
        t0 = time.perf_counter()
        if self._profile_dirty:
            self._load_profile()
        _prompt.check_fits(self._system_text(), message, self.cs.budget_tokens, self.count)  # before recalling for nothing
        need = memory_need(message) if self.cs.memory_need else Need.FULL
        result = self._recall(message, at, need)
        plan = _prompt.plan_prompt(
            message,
            system=self.system,
            profile=self.profile,
            summary=self.summary,
            candidates=() if result is None or result.abstained else result.hits,
            need=need,
            turns=self.turns,
            window_start=self.window_start,
            limits=_prompt.Limits(
                self.cs.budget_tokens, self.cs.memory_tokens, self.cs.recall_k if need is Need.FULL else self.cs.statement_k
            ),
            count=self.count,
            layout=self.layout,
        )
        plan = replace(plan, memory_seconds=time.perf_counter() - t0, degraded=() if result is None else result.degraded)
        self.window_start = plan.window_start
        self.last_plan = plan
        return plan

    def stream(self, plan: PromptPlan) -> Generator[str, None, None]:
        """Step 2: the reply, piece by piece. Closing the iterator stops generation (Ctrl-C)."""
        self.last_ended = None
        sp = self.sampling
        with self._learner.reply_model():
            yield from self.model.stream(
                plan.messages, max_tokens=sp.max_tokens, temperature=sp.temperature, top_p=sp.top_p,
                repeat_penalty=sp.repeat_penalty,
            )  # fmt: skip
            finish = self.model.last_finish
            self.last_ended = None if finish is None else finish == "stop"

    def finish(
        self, message: str, reply: str, plan: PromptPlan, *, interrupted: bool = False, at: datetime | None = None
    ) -> TurnResult:
        """Step 3: record the exchange, in the conversation and as episodes (unless incognito), and queue
        the learning. An interrupted reply is kept as far as it got, marked " [interrupted]"."""
        t0 = time.perf_counter()
        self._learner.resume()  # the reply is done (or was made elsewhere): learning may use the model
        at = at or self.clock()
        message = message.strip()
        reply = reply.strip() + (" [interrupted]" if interrupted and reply.strip() else "")
        said = [Turn("user", message, at, self.count(message))]
        if reply:
            said.append(Turn("assistant", reply, at, self.count(reply)))
        stored: list[str] = []
        if self.remember:
            stored = self._learner.store_episodes(said, len(self.turns))
            said = [replace(t, memory_id=mid) for t, mid in zip(said, stored, strict=True)]
        first = len(self.turns)
        self.turns += said  # in place: a queued summary reads this list when it runs
        self.report.turns += 1
        if self.learn:
            ex = _extract.Exchange(self.session_id, first, message, reply, at, said[0].memory_id)
            self._learner.extract((*plan.messages[:-1], ChatMessage("user", message), ChatMessage("assistant", reply)), ex)
        self._learner.fold(self.window_start, self.turns, self._system_text)
        ended = None if interrupted else self.last_ended
        return TurnResult(message, reply, interrupted, plan, plan.memory_seconds + time.perf_counter() - t0, tuple(stored), ended)

    # -- slash-command helpers ------------------------------------------------------------------
    def remember_text(self, text: str) -> _extract.FactChange:
        """/remember: the user states a fact directly; it is reconciled like an extracted one, but not
        reviewed (``[chat] review``): these are the words the user asked to keep."""
        text = " ".join(text.split())
        if not text:
            raise usage_error("nothing to remember", hint="Use /remember TEXT.")
        with self._learner.lock:
            vec = self.ctx.embedder.embed_documents([text])[0]
            ex = _extract.Exchange(self.session_id, len(self.turns), text, "", self.clock(), None, explicit=True)
            change, _ = _extract.reconcile(
                self.ctx, None, (), text, vec, kind_tag="fact", valid_from=None, ex=ex, space=self.space
            )
        self.report.changes.append(change)
        self._profile_changed()
        return change

    def forget(self, phrase: str) -> list[_extract.FactChange]:
        if not phrase.strip():
            raise usage_error("say what to forget", hint="Use /forget WHAT, e.g. /forget my old address.")
        with self._learner.lock:
            changes = _extract.forget_matching(self.ctx, phrase, space=self.space)
        self.report.changes += changes
        self._profile_changed()
        return changes

    def recall(self, query: str) -> RecallResult:
        from memcli.services.recall import recall

        with self._learner.lock:
            return recall(self.ctx, query, space=self.space, now=self.clock())

    # -- internals -------------------------------------------------------------------------------
    def _system_text(self) -> str:
        return _prompt.system_text(self.system, self.profile, self.summary)

    def _recall(self, message: str, at: datetime | None, need: Need) -> RecallResult | None:
        from memcli.services.recall import recall

        if need is Need.NONE:
            return None  # small talk: memories would only distract (and cost prompt evaluation)
        with self._learner.lock:
            if not self.ctx.store.catalog.spaces().get(self.space):
                return None  # an empty memory: nothing to recall
            # Twice what can be shown: turns already in the window and the assistant's replies are left out.
            k = 2 * (self.cs.recall_k if need is Need.FULL else self.cs.statement_k) + 4
            return recall(self.ctx, message, space=self.space, k=k, now=at or self.clock(), touch=self.remember)
