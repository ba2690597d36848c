"""Chat speed with a realistic-size model: the cache-friendly prompt layout vs memories-first, memcli's
generation speed vs raw llama-cpp-python, and the share of each turn spent on memory work.

    .venv/bin/python benchmarks/bench_chat.py [--quick] [--turns 20] [--threads N]

The model is a random-weight GGUF in the Qwen2.5-0.5B shape (24 layers, width 896, 14 heads / 2 KV
heads, ffn 4864, vocab ~151k, Q8_0) written by ``memcli.models.synthetic``: llama.cpp's speed does not
depend on the weight values, only on the shapes and the number of tokens evaluated. The memory is the
demo notes (examples/notes) so every turn recalls something. Fact extraction is off (it runs after a
reply and does not change the reply path; with random weights it would only burn the CPU).

Per layout, one fresh model and one 20-turn conversation (the same user messages):
* ttft: prepare (recall + prompt) → first streamed piece, i.e. what the user waits for;
* reused: prompt tokens llama.cpp took from its KV cache instead of evaluating (LlamaChat reports it);
* memory share: (recall + prompt building + storing the turn) / the whole turn.
Generation speed: memcli's streamed tokens/s after the first token (``LlamaChat.stream``, what chat
streams from) vs raw ``Llama.create_chat_completion`` on the last turn's messages, alternated over 5
runs in the same process (ratio; goal ≥ 0.95).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from memcli.api import Memcli

REPO = Path(__file__).resolve().parents[1]
MESSAGES = [
    "Hi! Can you remind me what the vet said about Pickle?",
    "And when is the next appointment?",
    "What did I write about the garden this spring?",
    "I'm planning a trip. Where did I say I wanted to go?",
    "Who is Liv again, and when does her flight land?",
    "Summarise my notes about work this month.",
    "What was the name of the bakery I liked?",
    "Did I ever write down my bike's frame number?",
    "What books did I want to read?",
    "Tell me about the dentist appointment.",
    "What did I cook last weekend?",
    "When did I last call my mother?",
    "What are my running times lately?",
    "Remind me of the wifi password at the cabin.",
    "What did the plumber quote?",
    "Which podcast episode did I want to share?",
    "What gift ideas did I note for Liv?",
    "How is the sourdough starter doing?",
    "What did I decide about the new job offer?",
    "Thanks! Anything else I should remember for tomorrow?",
]


def model_path(cache: Path) -> Path:
    from memcli.models.synthetic import write_gguf

    path = cache / "qwen05b-random-q8_0.gguf"
    if not path.exists():
        t = time.perf_counter()
        write_gguf(path, preset="qwen05b", seed=0)
        print(f"wrote {path} ({path.stat().st_size / 1e6:.0f} MB) in {time.perf_counter() - t:.0f} s", file=sys.stderr)
    return path


def run_layout(mem: Memcli, path: Path, layout: str, turns: int, threads: int, reply_tokens: int) -> list[dict[str, Any]]:
    from memcli.backends.llama_chat import LlamaChat
    from memcli.services.chat import ChatSession

    model = LlamaChat(path, n_ctx=4096, n_threads=threads, n_gpu_layers=0, seed=0)
    session = ChatSession(mem._ctx, model, space="demo", remember=True, background=False)
    session.layout = layout
    session.learn = False
    rows = []
    for i, message in enumerate(MESSAGES[:turns]):
        t0 = time.perf_counter()
        plan = session.prepare(message)
        first = None
        text = ""
        for piece in session.stream(plan):
            if first is None:
                first = time.perf_counter()
            text += piece
        end = time.perf_counter()
        result = session.finish(message, text, plan)
        done = time.perf_counter()
        gen_tokens = model.count_tokens(text) if text else 0
        rows.append(
            {
                "turn": i + 1,
                "prompt_tokens": model.last_prompt_tokens,
                "reused": model.last_cached_tokens,
                "ttft": (first or end) - t0,
                "gen_tps": (gen_tokens - 1) / (end - first) if first and end > first and gen_tokens > 1 else float("nan"),
                "memory_s": result.memory_seconds,
                "turn_s": done - t0,
                "messages": plan.messages,
            }
        )
        print(f"  {layout} turn {i + 1}: ttft {rows[-1]['ttft']:.2f} s, prompt {model.last_prompt_tokens}, "
              f"reused {model.last_cached_tokens}", file=sys.stderr)  # fmt: skip
    session.close()
    model.close()
    return rows


def generation_rates(path: Path, messages: Any, threads: int, reply_tokens: int, runs: int) -> tuple[float, float]:
    """Generated tokens/s after the first token, median over ``runs``: raw llama-cpp-python streaming
    ``create_chat_completion`` and memcli's ``LlamaChat.stream`` on the same model and messages, the
    two alternated run by run so machine noise falls on both alike. Returns (raw, memcli)."""
    from llama_cpp import Llama

    from memcli.backends.llama_chat import LlamaChat, plain_weight_buffers

    with plain_weight_buffers():  # as memcli loads it: llama.cpp's AMX/repack buffers crash on some CPUs
        llm = Llama(model_path=str(path), n_ctx=4096, n_threads=threads, n_threads_batch=threads, verbose=False, seed=0)
    ours = LlamaChat(path, n_ctx=4096, n_threads=threads, n_gpu_layers=0, seed=0)
    msgs = [{"role": m.role, "content": m.content} for m in messages]

    def rate(pieces: Any) -> float | None:
        first, n = None, 0
        for piece in pieces:
            if piece:
                n += 1
                if first is None:
                    first = time.perf_counter()
        end = time.perf_counter()
        return (n - 1) / (end - first) if first is not None and n > 1 else None

    def raw_pieces() -> Any:
        stream = llm.create_chat_completion(messages=msgs, max_tokens=reply_tokens, temperature=0.7, stream=True)  # type: ignore[arg-type]
        for chunk in stream:
            yield chunk["choices"][0]["delta"].get("content")  # type: ignore[index]

    raw_rates, our_rates = [], []
    for _ in range(runs):
        r = rate(raw_pieces())
        o = rate(ours.stream(messages, max_tokens=reply_tokens, temperature=0.7))
        if r and o:
            raw_rates.append(r)
            our_rates.append(o)
    llm.close()
    ours.close()
    return statistics.median(raw_rates), statistics.median(our_rates)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="5 turns, short replies (a smoke run)")
    ap.add_argument("--turns", type=int, default=20)
    ap.add_argument("--threads", type=int, default=max(1, (os.cpu_count() or 2)))
    ap.add_argument("--reply-tokens", type=int, default=48)
    args = ap.parse_args()
    turns = 5 if args.quick else min(args.turns, len(MESSAGES))
    cache = Path(tempfile.gettempdir()) / f"memcli-bench-{os.getuid()}"
    cache.mkdir(parents=True, exist_ok=True)
    path = model_path(cache)
    results: dict[str, list[dict[str, Any]]] = {}
    settings: dict[tuple[str, str], object] = {("chat", "max_reply_tokens"): args.reply_tokens, ("chat", "extract"): False}
    for layout in ("cache", "memories_first"):
        with tempfile.TemporaryDirectory() as home:  # each layout starts from the same notes, no episodes
            mem = Memcli(home=home, settings=settings)
            mem.ingest([REPO / "examples" / "notes"], space="demo")
            print(f"layout {layout}…", file=sys.stderr)
            results[layout] = run_layout(mem, path, layout, turns, args.threads, args.reply_tokens)
            mem.close()
    raw, ours = generation_rates(path, results["cache"][-1]["messages"], args.threads, args.reply_tokens, 5)
    print(f"# Chat speed — random-weight Qwen2.5-0.5B-shape GGUF (Q8_0), {args.threads} threads\n")
    print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs, {platform.system()} {platform.release()}, "
          f"Python {platform.python_version()}; turns {turns}, reply ≤ {args.reply_tokens} tokens\n")  # fmt: skip
    print(
        "| layout | ttft turn 1 (s) | ttft last turn (s) | median ttft (s) | prompt tokens last turn | reused from cache last turn | median memory share |"
    )
    print("|---|---|---|---|---|---|---|")
    for layout, rows in results.items():
        share = statistics.median(r["memory_s"] / r["turn_s"] for r in rows)
        print(f"| {layout} | {rows[0]['ttft']:.2f} | {rows[-1]['ttft']:.2f} | {statistics.median(r['ttft'] for r in rows):.2f} | "
              f"{rows[-1]['prompt_tokens']} | {rows[-1]['reused']} | {share:.1%} |")  # fmt: skip
    in_session = statistics.median(r["gen_tps"] for r in results["cache"] if r["gen_tps"] == r["gen_tps"])
    print("\n| generation, last turn's prompt, 5 alternated runs | tokens/s (median) |\n|---|---|")
    print(f"| raw llama-cpp-python | {raw:.1f} |\n| memcli (LlamaChat.stream) | {ours:.1f} |\n| ratio | {ours / raw:.2f} |")
    print(f"\n(memcli chat's own turns above, for reference: median {in_session:.1f} tokens/s while streaming)")
    c, m = results["cache"][-1]["ttft"], results["memories_first"][-1]["ttft"]
    print(f"\nlast-turn time to first token: cache-friendly {c:.2f} s vs memories-first {m:.2f} s ({m / c:.1f}×)")


if __name__ == "__main__":
    main()
