"""The CLI end to end: JSON envelopes, plain output when piped, exit codes, no tracebacks."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from memcli.errors import ExitCode

REPO = Path(__file__).resolve().parent.parent


def test_add_recall_show_list_stats_json(cli) -> None:  # type: ignore[no-untyped-def]
    r = cli("add", "Pickle's vet said: a mild wrist sprain, ten days of rest", "--tag", "dog", "--json")
    assert r.code == 0
    env = r.json()
    assert env["schema"] == "memcli/1" and env["ok"] and env["command"] == "add"
    mid = env["data"]["added"][0]["id"]
    assert cli("add", "The Harbour 10K took me 47:12", "--when", "2026-10-11").code == 0
    r = cli("recall", "what did the veterinarian say about my dog", "-k", "1", "--json")
    hit = r.json()["data"]["hits"][0]
    assert hit["memory"]["id"] == mid and hit["rank"] == 1 and hit["dense_similarity"] > 0.3
    r = cli("show", mid[:8], "--json")
    assert r.json()["data"]["tags"] == ["dog"] and r.json()["data"]["access_count"] == 1
    r = cli("list", "--json")
    assert r.json()["data"]["total"] == 2
    r = cli("stats", "--json")
    assert r.json()["data"]["kinds"] == {"note": 2}
    url = __import__("os").environ.get("MEMCLI_STORE_URL")
    assert r.json()["data"]["store"].startswith(url) if url else r.json()["data"]["store"] == "embedded"


def test_plain_output_when_piped(cli) -> None:  # type: ignore[no-untyped-def]
    cli("add", "Oat milk is in the fridge door")
    r = cli("recall", "milk", "--explain")
    lines = r.out.strip().splitlines()
    assert lines[0].split("\t")[:3] == ["#", "id", "fused"]
    assert "Oat milk" in lines[1] and "\x1b[" not in r.out
    r = cli("list")
    assert r.out.splitlines()[0] == "id\twhen\tkind\ttags\ttext"


def test_stdin_add(cli) -> None:  # type: ignore[no-untyped-def]
    r = cli("add", "-", "--json", stdin="remember this from a pipe\n")
    assert r.code == 0 and r.json()["data"]["added"][0]["text"] == "remember this from a pipe"


def test_forget_restore_purge_flow(cli) -> None:  # type: ignore[no-untyped-def]
    mid = cli("add", "a memory to drop", "--json").json()["data"]["added"][0]["id"]
    r = cli("forget", mid)
    assert r.code == 0 and "trash" in r.out and f"memcli restore {mid[:8]}" in r.out
    assert cli("list", "--trash", "--json").json()["data"]["total"] == 1
    assert cli("restore", mid).code == 0
    # A purge needs confirmation; without a terminal it refuses unless --yes.
    r = cli("forget", mid, "--purge")
    assert r.code == ExitCode.USAGE and "--yes" in r.err
    r = cli("forget", mid, "--purge", "--yes", "--json")
    assert r.code == 0 and r.json()["data"]["purged"]
    assert cli("list", "--json").json()["data"]["total"] == 0


def test_forget_by_query_previews(cli) -> None:  # type: ignore[no-untyped-def]
    cli("add", "gnocchi with brown butter and sage")
    cli("add", "the train to Bergen leaves at nine")
    r = cli("forget", "--query", "gnocchi", "--dry-run")
    assert r.code == 0 and "gnocchi" in r.out and "dry run" in r.err
    assert cli("list", "--json").json()["data"]["total"] == 2
    assert cli("forget", "--query", "gnocchi", "--yes").code == 0
    assert [m["text"] for m in cli("list", "--json").json()["data"]["memories"]] == ["the train to Bergen leaves at nine"]


@pytest.mark.parametrize(
    ("args", "code", "needle"),
    [
        (("show", "deadbeef"), ExitCode.NOT_FOUND, "no memory with id"),
        (("add", "   "), ExitCode.USAGE, "empty"),
        (("add", "x", "--when", "someday"), ExitCode.USAGE, "cannot read 'someday'"),
        (("add", "x", "--kind", "poem"), ExitCode.USAGE, "unknown kind"),
        (("recall", "x", "--space", "No Way"), ExitCode.USAGE, "invalid space name"),
        (("forget",), ExitCode.USAGE, "say what to forget"),
        (("restore", "abcd1234"), ExitCode.NOT_FOUND, "no memory"),
        (("recall", "x", "-k", "0"), 2, "Invalid value"),
        (("ingest", "/nonexistent/notes"), ExitCode.NOT_FOUND, "no such file"),
    ],
)
def test_errors_have_messages_codes_and_no_traceback(cli, args, code, needle) -> None:  # type: ignore[no-untyped-def]
    r = cli(*args)
    assert r.code == code, r.err
    assert needle in r.err and "Traceback" not in r.err + r.out


def test_json_errors_use_the_envelope(cli) -> None:  # type: ignore[no-untyped-def]
    r = cli("show", "deadbeef", "--json")
    env = r.json()
    assert r.code == ExitCode.NOT_FOUND
    assert env["ok"] is False and env["error"]["name"] == "NOT_FOUND" and env["error"]["hint"]


def test_missing_embedding_model_says_how_to_get_one(cli, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("MEMCLI_EMBEDDING_MODEL", str(tmp_path / "nope.gguf"))
    r = cli("add", "hello")
    assert r.code == ExitCode.MODEL and "not found" in r.err
    bogus = tmp_path / "bogus.gguf"
    bogus.write_bytes(b"this is not a model")
    monkeypatch.setenv("MEMCLI_EMBEDDING_MODEL", str(bogus))
    r = cli("add", "hello")
    assert r.code == ExitCode.MODEL and "not a GGUF" in r.err


def test_terminal_escapes_in_memories_are_neutralised(cli) -> None:  # type: ignore[no-untyped-def]
    cli("add", "evil \x1b[2J\x1b]0;pwned\x07 text")
    r = cli("list")
    assert "\x1b" not in r.out and "\\x1b[2J" in r.out


def _run(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, env=env, cwd=REPO, timeout=120)


def test_cli_import_stays_light(home: Path) -> None:
    code = "import sys, memcli.cli.app; bad = [m for m in ('chromadb', 'llama_cpp', 'numpy') if m in sys.modules]; print(bad)"
    r = _run("-c", code, env=dict(os.environ))
    assert r.stdout.strip() == "[]", r.stdout + r.stderr


def test_module_entry_point_and_exit_codes(home: Path) -> None:
    env = dict(os.environ)
    r = _run("-m", "memcli", "--version", env=env)
    assert r.returncode == 0 and r.stdout.startswith("memcli ")
    r = _run("-m", "memcli", "show", "0000ffff", env=env)
    assert r.returncode == ExitCode.NOT_FOUND and "Traceback" not in r.stderr
    r = _run("-m", "memcli", "--help", env=env)
    assert r.returncode == 0 and "recall" in r.stdout


def test_first_run_converts_the_bundled_model(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """With no model configured, memcli converts the bundled MiniLM once and says so."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MEMCLI_")}
    env["MEMCLI_HOME"] = str(tmp_path / "fresh")
    r = _run("-m", "memcli", "add", "first memory", env=env)
    assert r.returncode == 0, r.stderr
    assert "converted the bundled all-MiniLM-L6-v2" in r.stderr
    assert (tmp_path / "fresh" / "models" / "all-MiniLM-L6-v2.gguf").stat().st_mode & 0o077 == 0
    r = _run("-m", "memcli", "recall", "first", env=env)
    assert r.returncode == 0 and "first memory" in r.stdout and "converted" not in r.stderr


def test_doctor_cli(cli) -> None:  # type: ignore[no-untyped-def]
    cli("add", "a healthy memory")
    r = cli("doctor", "--json")
    assert r.code == 0 and r.json()["data"]["ok"]
    assert {f["check"] for f in r.json()["data"]["findings"]} >= {"catalog integrity", "vector index", "permissions"}


def test_models_import_and_list(cli, home: Path) -> None:  # type: ignore[no-untyped-def]
    from memcli.models.bundled import bundled_minilm_dir

    src = bundled_minilm_dir()
    assert src is not None
    r = cli("models", "import", str(src), "--name", "my-minilm", "--json")
    assert r.code == 0, r.err
    assert r.json()["data"]["dim"] == 384
    listed = cli("models", "list", "--json").json()["data"]
    # The imported model, and the starter chat model from its pip package, in use for chat.
    installed = {m["name"]: m for m in listed["installed"]}
    assert set(installed) == {"my-minilm.gguf", "SmolLM2-135M-Instruct.Q4_1.gguf"}
    assert installed["SmolLM2-135M-Instruct.Q4_1.gguf"]["in_use"] == "chat"
    assert installed["my-minilm.gguf"]["from"] == "models folder"
    assert {m["name"] for m in listed["recommended"]} >= {"all-minilm-l6-v2", "qwen2.5-1.5b-instruct"}
    r = cli("models", "import", str(home / "nowhere"))
    assert r.code == ExitCode.MODEL and "Traceback" not in r.err


def test_help_texts_keep_their_brackets() -> None:
    """Help texts name config keys as "[store] url"; rendered as Rich markup, "[store]" vanished."""
    import re
    from typing import Any

    import typer.main
    from typer.testing import CliRunner

    from memcli.cli.app import app

    root = typer.main.get_command(app)

    def walk(cmd: Any, path: tuple[str, ...]) -> list[tuple[tuple[str, ...], str]]:  # typer bundles its own click
        texts = [(path, getattr(p, "help", None) or "") for p in cmd.params] + [(path, cmd.help or "")]
        if hasattr(cmd, "commands"):
            for name, sub in cmd.commands.items():
                texts += walk(sub, (*path, name))
        return texts

    bracketed = [(path, m) for path, text in walk(root, ()) for m in re.findall(r"\[[a-z_]+\]", text)]
    assert bracketed  # the check below checks something
    for path, token in bracketed:
        out = CliRunner().invoke(app, [*path, "--help"], terminal_width=100).output
        assert token in " ".join(out.split()), (path, token)
