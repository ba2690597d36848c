"""What a chat session learns, and when: each exchange is stored as episodes at once; facts are
extracted from it, and turns that left the prompt folded into a running summary, on one worker
thread, after the reply has been shown.

Learning never delays a reply. A new message makes the worker step aside (``step_aside``: a running
request stops, raises ``Cancelled`` and is redone later); the reply holds the model while it streams
(``reply_model``); then the worker goes on (``resume``). What is left runs at ``drain`` (the end of
the conversation), or is dropped and counted by ``close``. The background requests continue the
reply's conversation (same system message and turns) so llama.cpp reuses its cached prompt.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from memcli.backends.base import ChatMessage, ChatModel
from memcli.context import Context
from memcli.errors import MemcliFailure
from memcli.prompts import chat as prompts
from memcli.records import Kind
from memcli.services import extract as _extract
from memcli.services.chat_prompt import Count, Turn
from memcli.store import NewMemory, embed_input

SUMMARY_MAX_TOKENS = 400
Job = Callable[[], None]


@dataclass
class SessionReport:
    """What one conversation taught memcli so far (filled in as the learning jobs finish)."""

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


class Learner:
    """One conversation's learning: its report, running summary and worker thread. ``background=False``
    runs every job at once, in the caller's thread (tests, benchmarks)."""

    def __init__(
        self,
        ctx: Context,
        model: ChatModel,
        *,
        space: str,
        count: Count,
        summary_tokens: int,
        on_forgotten: Callable[[], None],
        background: bool = True,
    ) -> None:
        self.ctx = ctx
        self.model = model
        self.space = space
        self.count = count
        self.summary_tokens = summary_tokens
        self.on_forgotten = on_forgotten  # a forgotten fact must leave the profile in the prompt too
        self.lock = threading.RLock()  # recall and memory writes: the session's thread vs the worker
        self.cancel = threading.Event()  # set while a reply needs the model
        self._busy = threading.Lock()  # held by the worker while it uses the model
        self._jobs: queue.Queue[Job | None] = queue.Queue()
        self._worker: threading.Thread | None = None
        self._stopping = False
        self._background = background
        self.start("")

    def start(self, session_id: str) -> None:
        """A new conversation: a fresh report, no summary."""
        self.session_id = session_id
        self.report = SessionReport(session=session_id, turns=0)
        self.summary = ""
        self.summarised_upto = 0  # turns before this index are in the summary

    # -- handing the model over to a reply -------------------------------------------------------------
    def step_aside(self) -> None:
        """A reply needs the model (and the memory lock): a running request stops, to be redone."""
        self.cancel.set()

    def resume(self) -> None:
        """The reply is done (or will not come): the worker may use the model again."""
        self.cancel.clear()

    @contextmanager
    def reply_model(self) -> Iterator[None]:
        """Hold the model for a reply, waiting for a background request to notice the cancel and let go."""
        self.cancel.set()
        try:
            with self._busy:
                yield
        finally:
            self.cancel.clear()

    # -- the work --------------------------------------------------------------------------------------
    def store_episodes(self, turns: Sequence[Turn], first: int) -> list[str]:
        """Keep an exchange as episodic memories (one atomic write), now rather than in the background:
        the next prompt must know which turns are stored, and a crash must not lose them."""
        emb = self.ctx.embedder
        with self.lock:  # the embedder too is shared with the worker
            items = []
            for i, t in enumerate(turns):
                text = f"{t.role}: {t.text}"
                keys = t.at.strftime("%A %d %B %Y")
                memory = NewMemory(
                    text=text, kind=Kind.EPISODE, source=f"chat:{self.session_id}", position=first + i,
                    event_at=t.at.timestamp(), recorded_at=t.at.timestamp(), tags=("chat", t.role), keys=keys,
                    importance=0.5 if t.role == "user" else 0.3,
                )  # fmt: skip
                items.append((memory, emb.embed_documents([embed_input(text, keys)])[0]))
            return self.ctx.store.add(self.space, items, emb.model_id)

    def extract(self, conversation: Sequence[ChatMessage], ex: _extract.Exchange) -> None:
        """Learn the facts the user's message in ``ex`` states (``conversation`` ends with the exchange)."""
        job = _extract.ExtractJob(self.ctx, self.model, conversation, ex, self.space)
        self.submit(lambda: self._extract(job))

    def fold(self, upto: int, turns: Sequence[Turn], system: Callable[[], str]) -> None:
        """Summarise the turns before ``upto`` (they left the prompt) into the running summary.
        ``turns`` and ``system`` are read when the job runs: a summary continues the latest prompt."""
        if upto > self.summarised_upto:
            self.submit(lambda: self._summarise(upto, turns, system))

    def _extract(self, job: _extract.ExtractJob) -> None:
        # Holding the memory lock through the LLM call is fine: a new message sets the cancel event
        # before it waits for this lock, and the backend stops generating when it sees that.
        with self.lock:
            report = job.run(self.cancel)
            self.report.changes += report.changes
            if any(c.action == "forgotten" and c.memory_id for c in report.changes):
                self.on_forgotten()
            self.report.llm_calls += report.llm_calls
            if report.error:
                self.report.errors.append(f"extraction of turn {job.ex.turn}: {report.error} (kept for `memcli doctor`)")

    def _summarise(self, upto: int, turns: Sequence[Turn], system: Callable[[], str]) -> None:
        if upto <= self.summarised_upto:
            return
        words = max(20, int(self.summary_tokens * 0.6))
        messages = [
            ChatMessage("system", system()),
            *(ChatMessage(t.role, t.text) for t in turns[self.summarised_upto : upto]),
            ChatMessage("user", prompts.SUMMARISE.format(words=words)),
        ]
        try:
            answer = _extract.ask_json(
                self.ctx, self.model, messages, prompts.SUMMARY_SCHEMA, operation="summarise",
                source=f"chat:{self.session_id}", max_tokens=SUMMARY_MAX_TOKENS, cancel=self.cancel,
            )  # fmt: skip
        except (ValueError, MemcliFailure) as e:  # an invalid answer, or a backend that cannot do it
            self.report.errors.append(f"summary: {getattr(e, 'message', e)}")
            self.summarised_upto = upto  # the turns stay recallable as episodes; not asked again for them
            return
        self.report.llm_calls += 1
        self.summary = truncate(answer["summary"].strip(), self.summary_tokens, self.count)
        self.summarised_upto = upto

    # -- the worker ------------------------------------------------------------------------------------
    def submit(self, job: Job) -> None:
        if not self._background:
            job()
            return
        if self._worker is None:
            self._worker = threading.Thread(target=self._run, name="memcli-learn", daemon=True)
            self._worker.start()
        self._jobs.put(job)

    def pending(self) -> int:
        """Jobs queued or running."""
        return self._jobs.qsize() + (1 if self._busy.locked() else 0)

    def drain(self) -> None:
        """Run every job left, then end the worker."""
        if self._worker is not None:
            self.cancel.clear()  # nothing is waiting for the model any more
            self._end_worker()

    def close(self) -> int:
        """Stop now: the running request is cut short and the jobs left are dropped; returns how many."""
        if self._worker is None:
            return 0
        self._stopping = True
        self.cancel.set()
        dropped = self._jobs.qsize()
        while not self._jobs.empty():
            self._jobs.get_nowait()
        self._end_worker()
        return dropped

    def _end_worker(self) -> None:
        assert self._worker is not None
        self._jobs.put(None)
        self._worker.join()
        self._worker = None
        self.cancel.clear()
        self._stopping = False

    def _run(self) -> None:
        while True:
            job = self._jobs.get()
            if job is None:
                return
            while True:
                while self.cancel.is_set():
                    if self._stopping:
                        return
                    time.sleep(0.05)  # a reply is being prepared or streamed: it has the model
                with self._busy:
                    if self.cancel.is_set():
                        continue
                    try:
                        job()
                    except _extract.Cancelled:
                        continue  # resumes where it stopped once the reply is done
                    except Exception as e:  # a failed job must not end the conversation's learning
                        self.report.errors.append(f"{type(e).__name__}: {e}")
                    break


def truncate(text: str, max_tokens: int, count: Count) -> str:
    """The longest prefix of whole words of ``text`` that fits ``max_tokens``."""
    if count(text) <= max_tokens:
        return text
    words = text.split()
    lo, hi = 0, len(words)
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if count(" ".join(words[:mid])) <= max_tokens:
            lo = mid
        else:
            hi = mid - 1
    return " ".join(words[:lo])
