"""Bad input, generated: property-based tests with Hypothesis.

Targets: command lines given to ``main()``; the user config file; JSONL imports; dates and time
expressions; arbitrary bytes as note files. The properties: never a traceback or "internal error"
(exit 1) for bad input, never a hang; a clear, documented refusal instead; nothing half-written.

Deterministic (``derandomize``, no example database) and bounded, so CI runs the same cases every time.
``MEMCLI_PROPERTY_SCALE=10`` runs ten times as many. The number of cases each target ran is printed at
the end of the module (and recorded in benchmarks/RESULTS.md, "Bad input").
"""

from __future__ import annotations

import functools
import io
import json
import math
import os
import sys
from collections import Counter
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from memcli.api import Memcli
from memcli.errors import ExitCode, MemcliFailure

SCALE = float(os.environ.get("MEMCLI_PROPERTY_SCALE", "1"))
CASES: Counter[str] = Counter()
EXITS: Counter[int] = Counter()  # exit codes the generated command lines got


def profile(n: int) -> settings:
    return settings(
        max_examples=max(1, int(n * SCALE)),
        derandomize=True,
        database=None,
        deadline=None,  # wall time is noisy on shared machines; hangs are caught by the timeouts below
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large],
    )


@pytest.fixture(scope="module", autouse=True)
def report_cases(request: pytest.FixtureRequest) -> Iterator[None]:
    yield
    line = "hypothesis cases run: " + ", ".join(f"{k} {v}" for k, v in sorted(CASES.items()))
    if IMPORTS:
        line += "; damaged-export import exit codes: " + ", ".join(f"{k}: {v}" for k, v in sorted(IMPORTS.items()))
    if EXITS:
        line += "; command-line exit codes: " + ", ".join(f"{k}: {v}" for k, v in sorted(EXITS.items()))
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        reporter.write_line("\n" + line)
    out = os.environ.get("MEMCLI_PROPERTY_REPORT")
    if out:
        Path(out).write_text(json.dumps({"cases": dict(CASES), "exits": dict(EXITS)}), encoding="utf-8")


@pytest.fixture(scope="module")
def store_home(tmp_path_factory: pytest.TempPathFactory, minilm_path: Path) -> Path:
    return tmp_path_factory.mktemp("props") / "home"


@pytest.fixture
def env(store_home: Path, minilm_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    for k in [k for k in os.environ if k.startswith("MEMCLI_") and not k.startswith("MEMCLI_TEST_")]:
        monkeypatch.delenv(k)
    monkeypatch.setenv("MEMCLI_HOME", str(store_home))
    monkeypatch.setenv("MEMCLI_EMBEDDING_MODEL", str(minilm_path))
    monkeypatch.setenv("MEMCLI_EMBEDDING_N_THREADS", "1")
    return dict(os.environ)


# -- dates and time expressions ----------------------------------------------------------------------
NUMBERS = st.one_of(
    st.integers(0, 100).map(str),
    st.integers(0, 10**30).map(str),
    st.sampled_from(["a", "an", "one", "ten", "zero", "-3", "1.5", "½"]),
)
UNITS = st.sampled_from(["minute", "minutes", "hour", "days", "week", "months", "year", "years", "decade", "fortnight"])
ISO = st.builds(
    lambda y, mo, d, h, mi, tz: f"{y:04d}-{mo:02d}-{d:02d}" + (f"T{h:02d}:{mi:02d}" if h is not None else "") + tz,
    st.integers(0, 10000),
    st.integers(0, 13),
    st.integers(0, 32),
    st.none() | st.integers(0, 25),
    st.integers(0, 61),
    st.sampled_from(["", "Z", "z", "+00:00", "-12:00", "+14:00", "+23:59", "-24:00", "+5"]),
)
TIME_TEXT = st.one_of(
    st.text(max_size=40),
    ISO,
    st.builds(lambda n, u, tail: f"{n} {u} {tail}", NUMBERS, UNITS, st.sampled_from(["ago", "", "from now", "ago ago"])),
    st.builds(
        lambda w, u: f"{w} {u}", st.sampled_from(["last", "this", "next", "the last", "in the past"]), UNITS | st.text(max_size=8)
    ),
    st.sampled_from(["now", "today", "yesterday", "tomorrow", "NOW ", " Yesterday", "last week", "last month", "last year"]),
    st.builds(
        lambda a, b: f"{a} {b}",
        st.sampled_from(["in", "before", "after", "since", "between", "from", "early", "late"]),
        ISO | NUMBERS,
    ),
)
NOWS = st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30)).flatmap(
    lambda dt: st.integers(-14 * 60, 14 * 60).map(lambda m: dt.replace(tzinfo=timezone(timedelta(minutes=m))))
)


@profile(600)
@given(text=TIME_TEXT, now=NOWS | st.none())
@example(text="1065518456 minutes ago", now=None)  # found by this test: OverflowError
@example(text="0001-01-01", now=None)  # ValueError from astimezone()
@example(text="9999-12-31T23:59-14:00", now=None)  # exists locally, not in UTC (what the store keeps)
def test_parse_when_returns_an_aware_time_or_a_usage_error(text: str, now: datetime | None) -> None:
    """--when/--since/--until/--now/--as-of: a point in time, or exit 2 with the accepted forms."""
    from memcli.text.when import parse_when

    CASES["time: parse_when"] += 1
    try:
        dt = parse_when(text, now)
    except MemcliFailure as e:
        assert e.code == ExitCode.USAGE and "2024-03-01" in e.hint
        return
    assert dt.tzinfo is not None and dt.utcoffset() is not None


@profile(600)
@given(text=TIME_TEXT | st.builds(lambda a, b: f"what did I do {a} {b}?", TIME_TEXT, TIME_TEXT), now=NOWS)
def test_time_hints_in_queries_never_raise(text: str, now: datetime) -> None:
    """A recall query's time words: a window, a preference or nothing; never an exception."""
    from memcli.text.timequery import TimeHint, parse_time_hint

    CASES["time: parse_time_hint"] += 1
    hint = parse_time_hint(text, now)
    assert hint is None or isinstance(hint, TimeHint)
    if hint is not None:
        for t in (hint.since, hint.until):
            assert t is None or t.tzinfo is not None


# -- JSONL imports -------------------------------------------------------------------------------------
SAFE_TEXT = st.text(st.characters(exclude_categories=["Cs"]), max_size=60)


def good_record(n: int) -> st.SearchStrategy[dict[str, Any]]:
    base = st.fixed_dictionaries(
        {"text": SAFE_TEXT.map(lambda t: f"rec{n} {t}")},
        optional={
            "kind": st.sampled_from(["note", "episode", "fact", "summary", "profile"]),
            "tags": st.lists(SAFE_TEXT, max_size=3),
            "time": st.one_of(
                st.datetimes(min_value=datetime(1971, 1, 2), max_value=datetime(2200, 1, 1)).map(lambda d: d.isoformat()),
                st.integers(0, 4_000_000_000),
                st.floats(0, 4e9),
            ),
            "source": SAFE_TEXT,
            "speaker": SAFE_TEXT.filter(lambda s: s != ""),
            "session": st.sampled_from(["s1", "s2", 7]),
        },
    )
    return base


# Valid records that once broke the parser: characters str.splitlines() treats as line ends, and times
# at the edges of what the store can hold.
TRICKY_GOOD: list[dict[str, Any]] = [
    {"text": "line\u2028separator"},
    {"text": "para\u2029separator"},
    {"text": "next\x85line"},
    {"text": "file\x1cseparator"},
    {"text": "epoch", "time": 0},
    {"text": "utc", "time": "1970-01-01T00:00:00+00:00"},
    {"text": "far future", "time": "9999-12-30T00:00:00+00:00"},
]
BAD_LINES = st.one_of(
    st.sampled_from(
        [
            "{not json}",
            '{"text": ',
            "[1, 2, 3]",
            '"just a string"',
            "42",
            "null",
            '{"no_text": "x"}',
            '{"text": ""}',
            '{"text": "   "}',
            '{"text": 5}',
            '{"text": "x", "kind": "diary"}',
            '{"text": "x", "tags": "a", "tags2": 1, "time": "next tuesday"}',
            '{"text": "x", "tags": [1, 2]}',
            '{"text": "x", "time": 1e20}',
            '{"text": "x", "time": -1e20}',
            '{"text": "x", "time": NaN}',
            '{"text": "x", "time": Infinity}',
            '{"text": "x", "time": "0001-01-01T00:00"}',
            '{"text": "x", "time": "9999-12-31T23:59:59-14:00"}',
            '{"text": "x", "time": true}',
            '{"text": "lone \\ud800 surrogate"}',
            '{"text": "x", "speaker": "\\udfff"}',
            '{"text": "x", "space": "Bad Space!"}',
            '{"text": "x", "space": 12.5}',
            '{"text": "x", "session": {"a": 1}}',
            '{"session": "s9", "messages": "not a list"}',
            '{"session": "s9", "messages": [1, 2]}',
            '{"session": "s9", "messages": [{"role": "user"}]}',
        ]
    ),
    st.text(max_size=30).filter(lambda s: s.strip() != "" and "\n" not in s and "\x00" not in s),  # NUL: "binary file"
)


@st.composite
def jsonl_file(draw: st.DrawFn) -> tuple[list[str], int | None, int]:
    """(lines, 1-based number of the first bad line or None, records the good lines hold)."""
    n = draw(st.integers(1, 8))
    lines: list[str] = []
    first_bad: int | None = None
    records = 0
    for i in range(n):
        kind = draw(st.sampled_from(["good", "good", "good", "blank", "bad"]))
        if kind == "blank":
            lines.append(draw(st.sampled_from(["", "  ", "\t"])))
        elif kind == "good":
            rec = draw(good_record(i) | st.sampled_from(TRICKY_GOOD))
            lines.append(json.dumps(rec, ensure_ascii=draw(st.booleans())))
            records += 1
        else:
            line = draw(BAD_LINES)
            try:  # a random string can be a valid record after all: then it is not "bad"
                obj = json.loads(line)
                valid = isinstance(obj, dict) and isinstance(obj.get("text"), str) and obj["text"].strip() != "" and len(obj) == 1
                valid = valid and not any(0xD800 <= ord(c) <= 0xDFFF for c in obj["text"])
            except ValueError:
                valid = False
            if valid:
                records += 1
            elif first_bad is None:
                first_bad = i + 1
            lines.append(line)
    return lines, first_bad, records


@profile(120)
@given(case=jsonl_file())
@example(case=(['{"text": "x", "space": "Bad Space!"}', '{"text": "line\u2028sep"}', "{not json}"], 1, 1))  # named line 3
@example(case=(['{"text": "x", "time": 1e20}'], 1, 0))  # found by this test: OverflowError, not a named line
def test_jsonl_import_skips_a_bad_file_naming_the_line(case: tuple[list[str], int | None, int], env: dict[str, str]) -> None:
    lines, first_bad, records = case
    CASES["jsonl import"] += 1
    n = CASES["jsonl import"]
    root = Path(env["MEMCLI_HOME"]).parent / "jsonl"
    root.mkdir(exist_ok=True)
    path = root / f"import-{n}.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8", errors="surrogatepass")
    mem = Memcli()
    try:
        before = _count(mem)
        report = mem.ingest([path])
        (outcome,) = report.files
        after = _count(mem)
        if first_bad is not None:
            assert outcome.status == "skipped", (lines, outcome)
            assert outcome.reason.startswith(f"line {first_bad}: "), (lines, outcome.reason)
            assert after == before  # nothing half-written
        elif records == 0:
            assert outcome.status == "skipped" and outcome.reason == "empty"
        else:
            assert outcome.status == "added", (lines, outcome)
            assert after - before == records == outcome.added
    finally:
        mem.close()


def _count(mem: Memcli) -> int:
    return mem._ctx.store.catalog.count()


# -- random bytes as note files ---------------------------------------------------------------------
NOTE_BYTES = st.one_of(
    st.binary(max_size=2000),
    st.text(st.characters(exclude_categories=["Cs"]), max_size=800).map(lambda t: t.encode("utf-8")),
    st.tuples(st.sampled_from(["utf-16", "latin-1", "cp1252", "utf-8-sig", "utf-32"]), st.text(max_size=200)).map(
        lambda p: p[1].encode(p[0], errors="replace")
    ),
    st.builds(
        lambda fm, body: f"---\n{fm}\n---\n{body}".encode(errors="surrogatepass"),
        st.one_of(
            st.text(max_size=120),
            st.sampled_from(
                [
                    "date: 0001-01-01",
                    "date: 9999-12-31",
                    "date: 2024-13-45",
                    "date: 1e400",
                    "tags: {a: b}",
                    "tags: [1, [2], {x: y}]",
                    "title: [a, b]",
                    "title: !!binary aGVsbG8=",
                    "date: 2001-12-14t21:59:43.10-05:00",
                    "- a list",
                    "&a [*a]",
                ]
            ),
        ),
        st.text(max_size=200),
    ),
    st.builds(lambda s: ("# " + s + "\n\nbody\n").encode(), st.text(max_size=100)),
)
SKIP_REASONS = ("binary file", "not UTF-8 text", "empty")


@profile(120)
@given(
    data=NOTE_BYTES,
    ext=st.sampled_from([".md", ".txt"]),
    name=st.sampled_from(["note", "2024-02-30", "0000-01-01", "9999-12-31"]),
)
@example(data=b"---\ndate: 0001-01-01\n---\nbody", ext=".md", name="note")  # found by this test: ValueError
@example(data=b"---\n$: 0000-00-00\n---", ext=".md", name="note")  # YAML's date constructor raised ValueError
def test_random_bytes_as_notes_are_ingested_or_skipped_with_a_reason(
    data: bytes, ext: str, name: str, env: dict[str, str]
) -> None:
    CASES["note file bytes"] += 1
    n = CASES["note file bytes"]
    root = Path(env["MEMCLI_HOME"]).parent / "notes" / str(n)
    root.mkdir(parents=True)
    path = root / f"{name}{ext}"
    path.write_bytes(data)
    mem = Memcli()
    try:
        before = _count(mem)
        (outcome,) = mem.ingest([path]).files
        mine = mem._ctx.store.catalog.by_source_prefix(f"file:{path.resolve()}")
        if outcome.status == "skipped":
            assert outcome.reason in SKIP_REASONS, outcome
            assert _count(mem) == before and mine == []
        else:
            assert outcome.status == "added", outcome
            decoded = data.decode("utf-8-sig")
            assert len(mine) == outcome.added  # 0 for a file of headings or front matter only
            for m in mine:
                assert all(w in decoded for w in m.text.split()), m.text[:80]
    finally:
        mem.close()


# -- `memcli import` of damaged exports ----------------------------------------------------------------
JSON_VALUE = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=6,
)


@st.composite
def damaged_export(draw: st.DrawFn, lines: list[str]) -> bytes:
    """A real export with one to three of: a line dropped, doubled or swapped; a field removed or
    given any JSON value; a line of random bytes; the file cut short; a byte flipped."""
    lines = list(lines)
    for _ in range(draw(st.integers(1, 3))):
        how = draw(st.sampled_from(["drop", "double", "swap", "field", "delete-field", "bytes", "cut", "flip"]))
        i = draw(st.integers(0, len(lines) - 1))
        if how == "drop" and len(lines) > 1:
            del lines[i]
        elif how == "double":
            lines.insert(i, lines[i])
        elif how == "swap":
            j = draw(st.integers(0, len(lines) - 1))
            lines[i], lines[j] = lines[j], lines[i]
        elif how in ("field", "delete-field"):
            try:
                obj = json.loads(lines[i])
            except ValueError:
                continue
            if not isinstance(obj, dict) or not obj:
                continue
            key = draw(st.sampled_from(sorted(obj)))
            if how == "field":
                obj[key] = draw(JSON_VALUE)
            else:
                del obj[key]
            lines[i] = json.dumps(obj)
        elif how == "bytes":
            lines.insert(i, draw(st.binary(max_size=40)).decode("latin-1"))
    data = ("\n".join(lines) + "\n").encode("utf-8", "surrogatepass")
    if draw(st.booleans()) and draw(st.integers(0, 3)) == 0:
        data = data[: draw(st.integers(0, len(data)))]
    if draw(st.integers(0, 4)) == 0 and data:
        k = draw(st.integers(0, len(data) - 1))
        data = data[:k] + bytes([data[k] ^ draw(st.integers(1, 255))]) + data[k + 1 :]
    return data


@pytest.fixture(scope="module")
def export_lines(tmp_path_factory: pytest.TempPathFactory, minilm_path: Path) -> list[str]:
    """An export of a small store with a link, the trash and an ingested file."""
    home = tmp_path_factory.mktemp("export-src")
    mem = Memcli(home=home / "home", settings={("embedding", "model"): str(minilm_path)})
    try:
        kept = mem.add("Pickle the beagle likes carrots", tags=["dog"])
        gone = mem.add("Liv lands on Friday at nine")
        mem._ctx.store.link(kept.added[0].id, gone.added[0].id, "related")
        mem.forget([gone.added[0].id])
        notes = home / "notes.md"
        notes.write_text("# Garden\n\nThe tomatoes went in on 3 May.\n\n## Later\n\nBasil next to them.\n")
        mem.ingest([notes])
        out = home / "export.jsonl"
        mem.export(out)
        return out.read_text(encoding="utf-8").splitlines()
    finally:
        mem.close()


IMPORTS: Counter[int] = Counter()  # exit codes of the damaged imports (both outcomes must occur)


def _totals(mem: Memcli) -> tuple[int, ...]:
    n = mem._ctx.store.catalog.row_counts()
    return tuple(n[t] for t in ("memories", "links", "audit", "sources"))


@profile(100)
@given(data=st.data())
def test_a_damaged_export_imports_whole_or_not_at_all(
    data: st.DataObject, env: dict[str, str], export_lines: list[str], tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    """`memcli import` of a damaged export: exit 0 (what it says it imported is there), or exit 2
    naming the problem with nothing written; never a traceback."""
    raw = data.draw(damaged_export(export_lines))
    CASES["damaged export import"] += 1
    path = tmp_path / "damaged.jsonl"
    path.write_bytes(raw)
    mem = Memcli()
    try:
        before = _totals(mem)
    finally:
        mem.close()
    code, out, err = _run_main(["import", str(path), "--json"], monkeypatch, capsys)
    mem = Memcli()
    try:
        after = _totals(mem)
    finally:
        mem.close()
    assert "Traceback" not in out + err and "internal error" not in out + err, err[-500:]
    assert code in (0, 2), (code, err[-500:])
    IMPORTS[code] += 1
    envelope = json.loads(out.strip().splitlines()[-1])
    if code == 2:
        assert envelope["ok"] is False and envelope["error"]["message"]
        assert after == before  # all or nothing
    else:
        assert after[0] - before[0] == len(envelope["data"]["added"])


def test_store_is_consistent_after_the_generated_imports(env: dict[str, str]) -> None:
    """Runs after the ingest and import properties above (same module store): doctor agrees with
    everything, and the damaged exports were both refused and imported (the damage is not all fatal)."""
    if CASES["damaged export import"]:
        assert IMPORTS[0] > 0 and IMPORTS[2] > 0, IMPORTS
    mem = Memcli()
    try:
        report = mem.doctor()
        assert report.ok, [f for f in report.findings if not f.ok]
    finally:
        mem.close()


# -- the user's config file -------------------------------------------------------------------------
KNOWN_KEYS = {
    "store": ["space"],
    "embedding": ["model", "n_threads", "max_tokens", "query_prefix"],
    "recall": ["k", "rrf_k", "dense_weight", "min_similarity"],
    "ingest": ["max_file_mb", "exclude", "neighbour_keys"],
    "output": ["color"],
    "chat": ["backend", "temperature"],
    "nonsense": ["x"],
}
TOML_VALUE = st.recursive(
    st.one_of(
        st.text(max_size=20).map(lambda s: json.dumps(s, ensure_ascii=False)),
        st.integers(-(2**70), 2**70).map(str),
        st.floats(allow_nan=True).map(
            lambda f: "nan" if math.isnan(f) else ("inf" if f == math.inf else ("-inf" if f == -math.inf else repr(f)))
        ),
        st.sampled_from(
            [
                "true",
                "false",
                "1979-05-27T07:32:00Z",
                "1979-05-27",
                "07:32:00",
                '"auto"',
                '"never"',
                '"default"',
                '"Bad Space!"',
                '"openai"',
            ]
        ),
    ),
    lambda inner: st.lists(inner, max_size=3).map(lambda xs: "[" + ", ".join(xs) + "]"),
    max_leaves=6,
)


# Values of the right type that a setting still cannot take (and a good one each).
TARGETED = {
    "space": ['"Bad Space!"', '""', '"work"', '"-x"'],
    "k": ["0", "-5", "3"],
    "n_ctx": ["-5", "0", "15", "512"],
    "n_threads": ["-1", "2"],
    "max_tokens": ["-1", "128"],
    "max_file_mb": ["0", "-1", "5"],
    "neighbour_keys": ["-1", "0"],
    "rrf_k": ["-1", "60"],
    "color": ['"sometimes"', '"never"'],
    "backend": ['"ollama"', '"openai"'],
}


@st.composite
def toml_doc(draw: st.DrawFn) -> bytes:
    parts: list[str] = []
    for section in draw(st.lists(st.sampled_from(sorted(KNOWN_KEYS)), max_size=3, unique=True)):
        parts.append(f"[{section}]")
        for key in draw(st.lists(st.sampled_from([*KNOWN_KEYS[section], "unknown_key"]), max_size=3, unique=True)):
            parts.append(f"{key} = {draw(TOML_VALUE | st.sampled_from(TARGETED.get(key, ['1'])))}")
    if draw(st.booleans()):
        parts.insert(0, f"top = {draw(TOML_VALUE)}")
    return "\n".join(parts).encode()


CONFIG_BYTES = st.one_of(
    toml_doc(),
    st.binary(max_size=200),
    st.text(max_size=200).map(lambda t: t.encode("utf-8")),
    st.sampled_from([b"[store\n", b"[store]\nspace = \n", b"\xff\xfe[store]", b"[[store]]\nspace='x'", b"store = 5"]),
)


def _run_main(argv: list[str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    from memcli.cli.app import main

    capsys.readouterr()
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b""), encoding="utf-8"))
    code = main(argv)
    out = capsys.readouterr()
    return code, out.out, out.err


@profile(150)
@given(raw=CONFIG_BYTES)
@example(raw=b'[store]\nspace = "Bad Space!"\n')  # once exit 2 "invalid space name", not naming the file
@example(raw=b"[recall]\nk = 0\n")
def test_any_config_file_is_used_or_refused_naming_the_file(
    raw: bytes, env: dict[str, str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    CASES["config file"] += 1
    config = Path(env["MEMCLI_HOME"]) / "config.toml"
    config.parent.mkdir(parents=True, exist_ok=True)
    config.write_bytes(raw)
    try:
        for argv in (["config", "show", "--json"], ["list", "--json"]):
            code, out, err = _run_main(argv, monkeypatch, capsys)
            assert "Traceback" not in out + err
            if code == 0:
                continue
            assert code == ExitCode.CONFIG, (raw, argv, code, out, err)
            assert str(config) in json.loads(out)["error"]["message"], (raw, out)
    finally:
        config.unlink()


# -- command lines --------------------------------------------------------------------------------------
COMMANDS = [
    "add",
    "recall",
    "show",
    "list",
    "forget",
    "restore",
    "stats",
    "ingest",
    "doctor",
    "reindex",
    "prune",
    "history",
    "export",
    "import",
]
GROUPS = {"config": ["show", "path"], "models": ["list"]}
VALUES = st.one_of(
    st.sampled_from(
        [
            "",
            "-",
            "0",
            "-1",
            "5",
            "1001",
            "99999999999999999999",
            "abc",
            "yesterday",
            "3 weeks ago",
            "2024-13-45",
            "0001-01-01",
            "99999999 years ago",
            "note",
            "fact",
            "bogus",
            "deadbeef",
            "0123",
            "Bad Space!",
            "work",
            "markdown",
            "jsonl",
            "*.md",
            "never",
            "--",
            "--json",
            "-k",
            "--help",
        ]
    ),
    st.text(st.characters(codec="utf-8", exclude_characters="\x00"), max_size=30),
    st.text(st.characters(categories=["Cs"]), min_size=1, max_size=3),  # argv bytes that are not UTF-8
)


@functools.cache
def _options(command: str) -> dict[str, bool]:
    """The command's options: name -> takes a value."""
    import typer

    from memcli.cli.app import app

    group = typer.main.get_command(app)
    cmd = group.commands[command]  # type: ignore[attr-defined]
    return {o: not getattr(p, "is_flag", False) for p in cmd.params if p.param_type_name == "option" for o in p.opts}


VALID = {
    "-k": ["3", "1"],
    "--kind": ["note", "fact", "episode"],
    "--tag": ["dog", "#work"],
    "-t": ["dog"],
    "--since": ["yesterday", "2024-03-01", "3 weeks ago"],
    "--until": ["now", "2030-01-01T10:00"],
    "--now": ["2025-01-01", "last week"],
    "--as-of": ["2024-01-01"],
    "--when": ["3 days ago", "2020-02-29"],
    "--space": ["work", "default"],
    "-s": ["personal"],
    "--limit": ["5"],
    "-n": ["2"],
    "--page": ["2"],
    "--context": ["1"],
    "-C": ["2"],
    "--query": ["kites", "owls"],
    "-q": ["lemons"],
    "--format": ["markdown", "jsonl", "text"],
    "--include": ["*.md"],
    "--exclude": ["*.txt"],
    "--name": ["notes"],
}
POSITIONAL = {
    "add": "text", "recall": "text", "show": "id", "forget": "id", "restore": "id", "ingest": "path",
    "history": "id", "import": "path", "export": "out",
}  # fmt: skip
IDS = st.sampled_from(["deadbeef", "0123", "zz", "", "12345678901234567890123456789012345", "abcd"])


@st.composite
def command_line(draw: st.DrawFn, paths: list[str]) -> list[str]:
    kind = draw(st.sampled_from(["command"] * 6 + ["group", "top"]))
    if kind == "top":
        head = draw(
            st.lists(st.sampled_from(["--version", "--help", "-h", "--color", "always", "sideways", "frobnicate"]), max_size=3)
        )
        return head + draw(st.lists(VALUES, max_size=2))
    if kind == "group":
        group = draw(st.sampled_from(sorted(GROUPS)))
        return [group, *draw(st.lists(st.sampled_from([*GROUPS[group], "nope", "--json", "--help"]), max_size=3))]
    command = draw(st.sampled_from(COMMANDS))
    argv = [command]
    positional = POSITIONAL.get(command)
    for _ in range(draw(st.integers(0 if positional is None else 1, 2)) if positional else 0):
        if positional == "path":
            argv.append(draw(st.sampled_from(paths)))
        elif positional == "out":  # export: stdout or a file in the test's (empty) working directory
            argv.append(draw(st.sampled_from(["-", "out.jsonl", "sub/out.jsonl", ""])))
        elif positional == "id":
            argv.append(draw(IDS | VALUES))
        else:
            argv.append(draw(VALUES | st.text(max_size=200)))
    opts = {**_options(command), "--nonexistent": False, "-Z": True}
    for _ in range(draw(st.integers(0, 4))):
        opt = draw(st.sampled_from(sorted(opts)))
        argv.append(opt)
        if opts[opt] and draw(st.integers(0, 9)) > 0:  # usually give the option its value, often a good one
            good = VALID.get(opt)
            value = draw(st.sampled_from(good)) if good and draw(st.booleans()) else draw(VALUES)
            outside = value.startswith(("/", "~")) or ".." in value or value in (".", "")
            if command == "ingest" and outside:
                value = draw(st.sampled_from(paths))  # never walk the machine: ingest reads only our temp files
            elif command == "export" and outside:
                value = "md-tree"  # never write outside the test's working directory
            argv.append(value)
    return argv


@pytest.fixture
def cli_paths(store_home: Path) -> list[str]:
    root = store_home.parent / "cli-files"
    if not root.exists():
        (root / "dir").mkdir(parents=True)
        (root / "dir" / "a.md").write_text("# A\nA note about kites.\n")
        (root / "b.txt").write_text("A text about lemons.")
        (root / "c.jsonl").write_text('{"text": "a record about owls"}\n')
        (root / "bad.jsonl").write_text("{nope}\n")
        (root / "bin.txt").write_bytes(b"\x00\x01\x02")
    return [
        str(root / "dir"),
        str(root / "b.txt"),
        str(root / "c.jsonl"),
        str(root / "bad.jsonl"),
        str(root / "bin.txt"),
        str(root / "missing.md"),
        "-",
    ]


@profile(150)
@given(data=st.data())
def test_random_command_lines_never_crash(
    data: st.DataObject,
    env: dict[str, str],
    cli_paths: list[str],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    """Any argv: a result or a documented refusal (2 usage, 3 not found, 5 model, 6 store, 7 partial,
    10 over the change budget, 11 no effect);
    never exit 1 (a bug) or a traceback. Not driven here: chat (needs a model; tests/test_chat_cli.py),
    consolidate (tests/test_consolidate.py) and `models pull` (the network)."""
    argv = data.draw(command_line(cli_paths))
    CASES["command line"] += 1
    monkeypatch.chdir(tmp_path)  # a relative path in argv resolves to an empty directory
    code, out, err = _run_main(argv, monkeypatch, capsys)
    EXITS[code] += 1
    assert isinstance(code, int)
    assert code in (0, 2, 3, 5, 6, 7, 10, 11), (argv, code, out[-500:], err[-500:])
    assert "Traceback" not in out + err and "internal error" not in out + err, (argv, out[-500:], err[-500:])
    if "--json" in argv and code in (3, 5, 6) and out.strip():
        envelope = json.loads(out.strip().splitlines()[-1])
        assert envelope["ok"] is False and envelope["error"]["code"] == code
