"""A scripted chat model (a reply queue) for testing what memcli does with an LLM's answers.

It is a real implementation of the ``ChatModel`` protocol, not a mock: it records every request and
answers from queues. The real llama.cpp and server backends have their own tests (test_llm_backends).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Generator, Sequence
from dataclasses import dataclass, field
from typing import Any

from memcli.backends.base import ChatMessage


@dataclass
class ScriptedChat:
    replies: list[str] = field(default_factory=list)  # for stream(); "" when empty
    answers: list[str | dict[str, Any]] = field(default_factory=list)  # for complete_json(), in order
    n_ctx: int = 8192
    model_id: str = "scripted"
    n_params: int | None = None  # unknown: the large-model defaults and the model extractor apply
    last_finish: str | None = None
    requests: list[tuple[str, tuple[ChatMessage, ...]]] = field(default_factory=list)
    gate: threading.Event | None = None  # complete_json waits for this (to test preemption)

    def count_tokens(self, text: str) -> int:
        return len(text.split()) + 1

    def stream(self, messages: Sequence[ChatMessage], *, max_tokens: int, temperature: float = 0.7, **sampling: float) -> Generator[str, None, None]:
        self.requests.append(("stream", tuple(messages)))
        self.last_finish = None
        reply = self.replies.pop(0) if self.replies else "ok"
        for word in reply.split(" "):
            yield word + " "
        self.last_finish = "stop"

    def complete_json(
        self,
        messages: Sequence[ChatMessage],
        schema: dict[str, Any],
        *,
        max_tokens: int,
        cancel: threading.Event | None = None,
    ) -> str:
        self.requests.append(("json", tuple(messages)))
        if self.gate is not None:
            while not self.gate.wait(0.01):
                if cancel is not None and cancel.is_set():
                    return ""  # cut short, like a real backend
        answer = self.answers.pop(0) if self.answers else {"facts": [], "forget": []}
        return answer if isinstance(answer, str) else json.dumps(answer)

    def close(self) -> None:
        pass


def facts(*texts: str, forget: Sequence[str] = ()) -> dict[str, Any]:
    """An extraction answer stating ``texts`` as facts."""
    return {"facts": [{"text": t, "type": "fact", "when": ""} for t in texts], "forget": list(forget)}
