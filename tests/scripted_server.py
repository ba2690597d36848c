"""A scripted OpenAI-compatible chat server on 127.0.0.1, for driving real ``memcli chat`` processes.

Used where the test is about what memcli does with a model's answers across process boundaries (the
chat kill loop): a deterministic answer per request, streamed as server-sent events like llama.cpp's
server does. It is not a stand-in for the real server: tests/test_llm_backends.py and
tests/test_chat_cli.py run the real ``python -m llama_cpp.server``.

What it answers:
- a plain chat request: a short reply;
- fact extraction (a schema with "facts"): "The user lives in CITY now." for a user message
  "I moved to CITY." (nothing otherwise);
- reconciliation (a schema with "action"): "supersede" the first candidate -- moving contradicts the
  old home;
- a summary (a schema with "summary"): a one-line summary.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

REPLY = "Noted, thanks for telling me."
MOVED = re.compile(r"I moved to ([A-Z][\w-]+)\.")


def fact_for(message: str) -> str | None:
    m = MOVED.search(message)
    return f"The user lives in {m.group(1)} now." if m else None


def answer(body: dict[str, Any]) -> str:
    schema = (body.get("response_format") or {}).get("schema") or {}
    props = schema.get("properties", {})
    messages = body.get("messages", [])
    if "facts" in props:
        # The request is [..., user message, assistant reply, extraction instruction].
        user = next((m["content"] for m in reversed(messages[:-1]) if m["role"] == "user"), "")
        fact = fact_for(user)
        facts = [{"text": fact, "type": "fact", "when": ""}] if fact else []
        return json.dumps({"facts": facts, "forget": []})
    if "action" in props:
        return json.dumps({"action": "supersede", "target": 1, "text": ""})
    if "summary" in props:
        return json.dumps({"summary": "The user talked about moving."})
    return REPLY


class _Handler(BaseHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    def do_POST(self) -> None:
        if not self.path.endswith("/chat/completions"):
            self.send_error(404)
            return
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", "0"))))
        text = answer(body)
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.end_headers()
        pieces = [text[i : i + 8] for i in range(0, len(text), 8)]
        for piece in pieces:
            chunk = {"choices": [{"index": 0, "delta": {"content": piece}, "finish_reason": None}]}
            self.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
        done = {"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}
        self.wfile.write(f"data: {json.dumps(done)}\n\ndata: [DONE]\n\n".encode())
        self.wfile.flush()


@contextmanager
def scripted_server() -> Iterator[str]:
    """Serve on a free loopback port; yields the base URL (``http://127.0.0.1:PORT/v1``)."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    finally:
        server.shutdown()
        server.server_close()
