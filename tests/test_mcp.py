"""`memcli mcp` end to end: the MCP SDK's own client (stdio_client + ClientSession) talking to the real
server process (`python -m memcli mcp`), on a real store in a temp home."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio
import pytest

from memcli.api import Memcli

Session = Any  # mcp.client.session.ClientSession


def _env() -> dict[str, str]:
    return dict(os.environ)  # MEMCLI_HOME, the test model, PYTHONPATH with the network guard


def talk(*args: str, script: Callable[[Session], Awaitable[Any]]) -> Any:
    """Start `memcli mcp ARGS` as the client would, run ``script`` on a ready session, return its result."""
    from mcp.client.session import ClientSession
    from mcp.client.stdio import StdioServerParameters, stdio_client

    params = StdioServerParameters(command=sys.executable, args=["-m", "memcli", "mcp", *args], env=_env())

    async def main() -> Any:
        async with stdio_client(params) as (read, write), ClientSession(read, write) as session:
            await session.initialize()
            return await script(session)

    return anyio.run(main)


def payload(result: Any) -> Any:
    assert not result.is_error, result.content[0].text
    return json.loads(result.content[0].text)


@pytest.fixture
def seeded(home: Path) -> Path:
    m = Memcli()
    m.add("Pickle's vet said: ten days of rest after the surgery", tags=["dog"])
    m.add("The quarterly report is due on the 14th", space="work")
    m.close()
    return home


def test_tools_recall_and_remember(seeded: Path) -> None:
    async def script(s: Session) -> dict[str, Any]:
        tools = {t.name: t for t in (await s.list_tools()).tools}
        recalled = payload(await s.call_tool("recall_memories", {"query": "what did the vet say about Pickle?", "limit": 3}))
        stored = payload(await s.call_tool("remember", {"text": "Ana's birthday is on 12 May", "tags": ["family"]}))
        again = payload(await s.call_tool("recall_memories", {"query": "when is Ana's birthday?", "limit": 1}))
        everywhere = payload(await s.call_tool("recall_memories", {"query": "report due", "space": "*", "limit": 5}))
        recent = payload(await s.call_tool("list_recent_memories", {"limit": 1}))
        return {"tools": tools, "recalled": recalled, "stored": stored, "again": again, "all": everywhere, "recent": recent}

    out = talk(script=script)
    assert set(out["tools"]) == {"recall_memories", "remember", "forget_memory", "list_recent_memories", "read_profile", "list_spaces"}
    assert "before answering" in out["tools"]["recall_memories"].description  # written for a model to use
    assert out["recalled"]["memories"][0]["text"] == "Pickle's vet said: ten days of rest after the surgery"
    new_id = out["stored"]["stored"][0]["id"]
    assert out["again"]["memories"][0]["id"] == new_id
    assert "The quarterly report is due on the 14th" in [m["text"] for m in out["all"]["memories"]]  # another space
    assert out["recent"]["memories"][0]["id"] == new_id
    m = Memcli()
    try:
        kept = m.show(new_id)
        assert (kept.text, kept.source, kept.tags) == ("Ana's birthday is on 12 May", "mcp", ("family",))
    finally:
        m.close()


def test_forget_goes_to_the_trash_only(seeded: Path) -> None:
    m = Memcli()
    vet = m.recall("vet", k=1).hits[0].memory.id
    m.close()

    async def script(s: Session) -> Any:
        return payload(await s.call_tool("forget_memory", {"memory_id": vet}))

    out = talk(script=script)
    assert out["trashed"]["id"] == vet and out["restore_with"] == f"memcli restore {vet}"
    m = Memcli()
    try:
        assert m.show(vet).state == "trashed"  # still there, restorable: the server never purges
        m.restore([vet])
        assert m.show(vet).state == "active"
    finally:
        m.close()


def test_read_only_offers_no_writes_and_refuses_them(seeded: Path) -> None:
    async def script(s: Session) -> Any:
        names = {t.name for t in (await s.list_tools()).tools}
        refused = await s.call_tool("remember", {"text": "this must not be stored"})
        recalled = payload(await s.call_tool("recall_memories", {"query": "vet"}))
        return names, refused, recalled

    names, refused, recalled = talk("--read-only", script=script)
    assert names == {"recall_memories", "list_recent_memories", "read_profile", "list_spaces"}
    assert refused.is_error and "remember" in refused.content[0].text
    assert recalled["memories"]
    m = Memcli()
    try:
        assert not any("must not be stored" in x.text for x in m.list(limit=50).memories)
    finally:
        m.close()


def test_bad_arguments_get_clear_errors(seeded: Path) -> None:
    async def script(s: Session) -> list[str]:
        calls = [
            ("recall_memories", {"query": "vet", "limit": 0}),
            ("recall_memories", {"query": "vet", "since": "the day after never"}),
            ("recall_memories", {}),
            ("list_recent_memories", {"kind": "gossip"}),
            ("forget_memory", {"memory_id": "00000000deadbeef"}),
            ("remember", {"text": "x", "space": "*"}),
        ]
        out = []
        for name, args in calls:
            r = await s.call_tool(name, args)
            assert r.is_error, (name, args)
            out.append(r.content[0].text)
        return out

    limit, since, missing, kind, forget, space = talk(script=script)
    assert "limit" in limit and "greater than or equal to 1" in limit
    assert "cannot read 'the day after never' as a date or time" in since
    assert "query" in missing and "Field required" in missing
    assert "gossip" in kind and "fact" in kind  # names the kinds there are
    assert "no memory with id '00000000deadbeef'" in forget
    assert "name one space" in space


def test_space_confinement(seeded: Path) -> None:
    async def script(s: Session) -> Any:
        own = payload(await s.call_tool("recall_memories", {"query": "report due"}))
        other = await s.call_tool("recall_memories", {"query": "vet", "space": "default"})
        spaces = payload(await s.call_tool("list_spaces", {}))
        return own, other, spaces

    own, other, spaces = talk("--space", "work", script=script)
    assert [m["space"] for m in own["memories"]] == ["work"]
    assert other.is_error and "confined to the space 'work'" in other.content[0].text
    assert spaces == {"spaces": {"work": 1}, "default": "work", "confined": True}


def test_server_survives_a_client_that_disappears(seeded: Path) -> None:
    """A client that dies mid-session (pipes closed with a write in flight, its answer never read): the
    server ends by itself, the store stays consistent, and the next client is served."""
    import mcp_types

    proc = subprocess.Popen(
        [sys.executable, "-m", "memcli", "mcp"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=_env()
    )
    assert proc.stdin is not None and proc.stdout is not None

    def send(msg: dict[str, Any]) -> None:
        assert proc.stdin is not None
        proc.stdin.write((json.dumps(msg) + "\n").encode())
        proc.stdin.flush()

    info = {"name": "vanishing-client", "version": "0"}
    send({"jsonrpc": "2.0", "id": 1, "method": "initialize",
          "params": {"protocolVersion": mcp_types.LATEST_PROTOCOL_VERSION, "capabilities": {}, "clientInfo": info}})  # fmt: skip
    assert json.loads(proc.stdout.readline())["id"] == 1
    send({"jsonrpc": "2.0", "method": "notifications/initialized"})
    proc.stdout.close()  # gone: the answers below have nowhere to go (the server's writes fail: EPIPE)
    send({"jsonrpc": "2.0", "id": 2, "method": "tools/call",
          "params": {"name": "remember", "arguments": {"text": "Written while the client vanished"}}})  # fmt: skip
    send({"jsonrpc": "2.0", "id": 3, "method": "tools/call", "params": {"name": "recall_memories", "arguments": {"query": "x"}}})
    proc.stdin.close()
    try:
        code = proc.wait(timeout=120)  # a liveness bound, not a timing assertion
    except subprocess.TimeoutExpired:
        proc.kill()
        raise AssertionError("the server did not end when its client went away") from None
    err = proc.stderr.read().decode() if proc.stderr else ""
    assert code == 0, err
    assert "Traceback" not in err, err

    m = Memcli()
    try:
        assert m.doctor().ok
        assert sum("Written while the client vanished" in x.text for x in m.list(limit=50).memories) <= 1  # whole or not at all
    finally:
        m.close()

    async def script(s: Session) -> Any:
        return payload(await s.call_tool("recall_memories", {"query": "vet Pickle", "limit": 1}))

    assert talk(script=script)["memories"][0]["text"].startswith("Pickle's vet said")


def test_cli_import_does_not_load_the_sdk(home: Path) -> None:
    code = "import sys, memcli.cli.app; print([m for m in ('mcp', 'selectolax', 'orgparse') if m in sys.modules])"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=_env(), timeout=120)
    assert r.stdout.strip() == "[]", r.stdout + r.stderr
