"""Ingesting what people have: ChatGPT and Claude exports, Obsidian/Logseq vaults, Org-mode, HTML, and
the summary of files memcli does not read. Fixtures are written by hand here, in each format's shape."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from conftest import write

from memcli.api import Memcli
from memcli.errors import ExitCode

if TYPE_CHECKING:
    from memcli.api import IngestProgress

T0 = datetime(2024, 3, 1, 9, 0, tzinfo=UTC).timestamp()


def _node(nid: str, parent: str | None, children: list[str], msg: dict[str, Any] | None) -> dict[str, Any]:
    return {"id": nid, "parent": parent, "children": children, "message": msg}


def _msg(role: str, text: Any, t: float | None, **extra: Any) -> dict[str, Any]:
    content = text if isinstance(text, dict) else {"content_type": "text", "parts": [text]}
    return {"id": f"m-{t}-{role}", "author": {"role": role, "name": None, "metadata": {}}, "create_time": t,
            "content": content, "status": "finished_successfully", "recipient": "all", "metadata": {}, **extra}  # fmt: skip


def chatgpt_export() -> list[dict[str, Any]]:
    """Two conversations. The first has a regenerated answer (the kept branch is the second), a system
    prompt, custom instructions hidden from the user, a browsing tool call and its result, an image."""
    mapping = {
        "root": _node("root", None, ["sys"], None),
        "sys": _node("sys", "root", ["ci"], _msg("system", "You are ChatGPT.", None)),
        "ci": _node("ci", "sys", ["u1"], _msg("user", "I prefer metric units.", None, metadata={"is_visually_hidden_from_conversation": True})),
        "u1": _node("u1", "ci", ["a1-old", "a1"], _msg("user", "How long should I rest my dog Pickle after surgery?", T0)),
        "a1-old": _node("a1-old", "u1", [], _msg("assistant", "DISCARDED: two months of rest.", T0 + 10)),
        "a1": _node("a1", "u1", ["tool-call"], _msg("assistant", "The vet usually says ten days of rest.", T0 + 20)),
        "tool-call": _node("tool-call", "a1", ["tool"], {**_msg("assistant", "search('dog rest')", T0 + 25), "recipient": "browser"}),
        "tool": _node("tool", "tool-call", ["u2"], _msg("tool", "RESULTS: ...", T0 + 26)),
        "u2": _node("u2", "tool", ["empty"], _msg("user", {"content_type": "multimodal_text", "parts": [
            {"content_type": "image_asset_pointer", "asset_pointer": "file-service://x"}, "Here is her scar."]}, T0 + 60)),
        "empty": _node("empty", "u2", ["a2"], _msg("assistant", "", T0 + 61)),
        "a2": _node("a2", "empty", [], _msg("assistant", "The scar looks like it is healing well.", T0 + 70)),
    }  # fmt: skip
    second = {
        "r": _node("r", None, ["q"], None),
        "q": _node("q", "r", ["a"], _msg("user", "Suggest a name for a sourdough starter.", T0 + 86400)),
        "a": _node("a", "q", [], _msg("assistant", "How about Clint Yeastwood?", T0 + 86410)),
    }
    return [
        {"title": "Dog surgery", "create_time": T0, "update_time": T0 + 70, "mapping": mapping,
         "current_node": "a2", "conversation_id": "c-dog", "id": "c-dog"},
        {"title": "Starter names", "create_time": T0 + 86400, "mapping": second, "current_node": "a", "id": "c-bread"},
    ]  # fmt: skip


def claude_export() -> list[dict[str, Any]]:
    """A linear (older) conversation and a branched (newer) one whose kept leaf skips an edited question."""
    linear = {
        "uuid": "k-1", "name": "Trip planning", "created_at": "2024-05-02T08:00:00Z", "updated_at": "2024-05-02T08:05:00Z",
        "account": {"uuid": "acc"},
        "chat_messages": [
            {"uuid": "h1", "sender": "human", "text": "We are going to Lisbon in June.", "created_at": "2024-05-02T08:00:00Z",
             "content": [{"type": "text", "text": "We are going to Lisbon in June."}], "attachments": [], "files": []},
            {"uuid": "s1", "sender": "assistant", "created_at": "2024-05-02T08:00:30Z", "text": "",
             "content": [{"type": "thinking", "thinking": "PRIVATE REASONING"},
                         {"type": "tool_use", "name": "web_search", "input": {"q": "lisbon"}},
                         {"type": "tool_result", "content": [{"type": "text", "text": "TOOL OUTPUT"}]},
                         {"type": "text", "text": "Lisbon in June has the Santo António festival."}]},
            {"uuid": "h2", "sender": "human", "text": "   ", "created_at": "2024-05-02T08:01:00Z", "content": []},
        ],
    }  # fmt: skip
    branched = {
        "uuid": "k-2", "name": "Bike", "created_at": "2024-05-03T10:00:00Z", "current_leaf_message_uuid": "b3",
        "chat_messages": [
            {"uuid": "b1", "parent_message_uuid": "00000000-0000-4000-8000-000000000000", "sender": "human",
             "text": "My bike chain squeaks.", "created_at": "2024-05-03T10:00:00Z"},
            {"uuid": "b2-old", "parent_message_uuid": "b1", "sender": "assistant", "text": "DISCARDED: buy a new bike.",
             "created_at": "2024-05-03T10:00:10Z"},
            {"uuid": "b2", "parent_message_uuid": "b1", "sender": "assistant", "text": "Clean it and use chain lube.",
             "created_at": "2024-05-03T10:00:20Z"},
            {"uuid": "b3", "parent_message_uuid": "b2", "sender": "human", "text": "Thanks, it is quiet now.",
             "created_at": "2024-05-03T10:02:00Z"},
        ],
    }  # fmt: skip
    return [linear, branched]


def _turns(mem: Memcli, space: str = "default") -> list[Any]:
    page = mem.list(limit=200, space=space)
    return sorted(page.memories, key=lambda m: (m.source, m.position))


def test_chatgpt_export_follows_the_kept_branch_with_real_times(mem: Memcli, tmp_path: Path) -> None:
    path = write(tmp_path / "export" / "my-chatgpt-data.json", json.dumps(chatgpt_export()))  # not "conversations.json"
    report = mem.ingest([tmp_path / "export"])
    assert report.count("added") == 1 and report.count("skipped") == 0 and report.ignored == ()
    turns = _turns(mem)
    by_source: dict[str, list[str]] = {}
    for m in turns:
        by_source.setdefault(m.source, []).append(m.text)
    base = f"file:{path.resolve()}"
    assert by_source == {
        f"{base}#c-bread": ["user: Suggest a name for a sourdough starter.", "assistant: How about Clint Yeastwood?"],
        f"{base}#c-dog": [
            "user: How long should I rest my dog Pickle after surgery?",
            "assistant: The vet usually says ten days of rest.",
            "user: Here is her scar.",
            "assistant: The scar looks like it is healing well.",
        ],
    }
    first = next(m for m in turns if "Pickle" in m.text)
    assert first.kind.value == "episode" and first.event_at == datetime.fromtimestamp(T0, UTC)
    assert "Dog surgery" in first.keys and "chatgpt" in first.tags
    hit = mem.recall("how long should Pickle rest after surgery", k=1).hits[0].memory
    assert hit.source == f"{base}#c-dog"
    again = mem.ingest([tmp_path / "export"])
    assert again.count("unchanged") == 1 and again.chunks_added == 0


def test_claude_export_skips_thinking_tools_and_discarded_branches(mem: Memcli, tmp_path: Path) -> None:
    path = write(tmp_path / "claude.json", json.dumps(claude_export()))
    mem.ingest([path])
    texts = [m.text for m in _turns(mem)]
    assert texts == [
        "user: We are going to Lisbon in June.",
        "assistant: Lisbon in June has the Santo António festival.",
        "user: My bike chain squeaks.",
        "assistant: Clean it and use chain lube.",
        "user: Thanks, it is quiet now.",
    ]
    lisbon = next(m for m in _turns(mem) if "Lisbon in June." in m.text)
    assert lisbon.source.endswith("#k-1") and lisbon.event_at == datetime(2024, 5, 2, 8, 0, tzinfo=UTC)


def test_export_on_stdin_is_detected_by_content(cli) -> None:  # type: ignore[no-untyped-def]
    r = cli("ingest", "-", "--name", "chatgpt-2024", "--json", stdin=json.dumps(chatgpt_export()))
    assert r.code == 0, r.err
    listed = cli("list", "--json", "--kind", "episode").json()["data"]
    assert listed["total"] == 6
    assert {m["source"] for m in listed["memories"]} == {"chatgpt-2024#c-dog", "chatgpt-2024#c-bread"}


def test_malformed_export_is_skipped_with_a_clear_reason_and_nothing_lost(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    root = tmp_path / "in"
    write(root / "note.md", "Remember to water the basil.")
    full = json.dumps(chatgpt_export())
    write(root / "conversations.json", full[: len(full) // 2])  # a download cut short
    write(root / "claude.json", json.dumps([{"uuid": "x", "name": "Broken", "chat_messages": {"not": "a list"}}]))
    write(root / "package.json", json.dumps({"name": "not-an-export", "version": "1.0.0"}))
    r = cli("ingest", str(root), "--json")
    assert r.code == ExitCode.PARTIAL
    data = r.json()["data"]
    reasons = {Path(f["path"]).name: f["reason"] for f in data["files"] if f["status"] == "skipped"}
    assert reasons["conversations.json"].startswith("ChatGPT export: not valid JSON at line 1")
    assert reasons["claude.json"] == "Claude export: conversation 1 ('Broken'): 'chat_messages' is not a list"
    assert set(reasons) == {"conversations.json", "claude.json"}
    assert data["ignored"] == {"files": 1, "types": {".json": 1}}  # JSON that is no export: not read, not a fault
    assert cli("list", "--json").json()["data"]["total"] == 1  # the note went in; nothing of the broken exports


def test_files_memcli_does_not_read_are_counted_by_type(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    root = tmp_path / "vault"
    write(root / "a.md", "A note about kites.")
    write(root / "attachments" / "scan.pdf", b"%PDF-1.4 ...")
    write(root / "attachments" / "paper.pdf", b"%PDF-1.4 ...")
    write(root / "report.docx", b"PK\x03\x04")
    write(root / "photo.PNG", b"\x89PNG")
    write(root / ".obsidian" / "workspace.json", "{}")  # the application's own folder: not counted
    r = cli("ingest", str(root))
    assert r.code == 0, r.err  # ignored files are not a fault
    assert "ignored: 4 files of types memcli does not read: .pdf ×2, .docx ×1, .png ×1" in " ".join(r.out.split())
    data = cli("ingest", str(root), "--json").json()["data"]
    assert list(data["ignored"]["types"].items()) == [(".pdf", 2), (".docx", 1), (".png", 1)]  # most first, then by name
    assert data["counts"]["skipped"] == 0 and data["counts"]["unchanged"] == 1


def _vault(root: Path) -> None:
    write(root / ".obsidian" / "app.json", '{"theme": "dark"}')
    write(root / "Attachments" / "diagram.png", b"\x89PNG\r\n")
    write(
        root / "Daily" / "2024-03-01.md",
        "Met [[Ana Souza|Ana]] for coffee; she told me about [[Projects/Lighthouse#Budget]].\n\n"
        "Also see [[Lisbon]] and `[[not a link]]`.\n",
    )
    write(root / "People" / "Ana Souza.md", "---\naliases: [Ana S]\ntags: [friend]\n---\n# Ana Souza\nAna works at the harbour museum.\n")
    write(
        root / "Projects" / "Lighthouse.md",
        "# Lighthouse\nRestoring the old lighthouse lens.\n\n## Budget\nThe budget is 40,000 euros, mostly for glass.\n",
    )
    write(root / "Trips.md", "---\naliases:\n  - Lisbon\n---\nLisbon in June: the Santo António festival. Ask [[Ana S]].\n")
    write(root / "logseq" / "bak" / "pages" / "Trips.md", "an old backup copy of a page")


def test_vault_wikilinks_become_links_recall_follows(mem: Memcli, tmp_path: Path) -> None:
    root = tmp_path / "vault"
    _vault(root)
    report = mem.ingest([root])
    assert report.count("added") == 4 and report.count("skipped") == 0
    assert dict(report.ignored) == {".png": 1}  # the attachment; .obsidian/ and logseq/bak are not the user's notes
    assert not any("backup" in m.text for m in mem.list(limit=50).memories)
    links = mem._ctx.store.catalog.links_of_kind("wikilink")
    by_id = {m.id: m for m in mem.list(limit=50).memories}
    named = {(Path(by_id[s].source).stem, by_id[d].text) for s, d in links}
    assert named == {
        ("2024-03-01", "Ana works at the harbour museum."),  # [[Ana Souza|Ana]]: a note ingested later in the run
        ("2024-03-01", "The budget is 40,000 euros, mostly for glass."),  # [[Projects/Lighthouse#Budget]]: the heading's chunk
        ("2024-03-01", "Lisbon in June: the Santo António festival. Ask [[Ana S]]."),  # [[Lisbon]]: a front-matter alias
        ("Trips", "Ana works at the harbour museum."),  # [[Ana S]]: an alias
    }
    assert report.links_added == 4

    hit = mem.recall("coffee with Ana", k=1, links=3).hits[0]
    assert Path(hit.memory.source).stem == "2024-03-01"
    linked = {x.memory.text: x for x in hit.linked}
    assert "Ana works at the harbour museum." in linked
    assert linked["Ana works at the harbour museum."].kind == "wikilink" and linked["Ana works at the harbour museum."].outgoing

    again = mem.ingest([root])  # nothing changed: no new links, none lost
    assert again.links_added == 0 and mem._ctx.store.catalog.links_of_kind("wikilink") == links

    write(root / "People" / "Ana Souza.md", "---\naliases: [Ana S]\n---\n# Ana Souza\nAna now runs the harbour museum.\n")
    third = mem.ingest([root])
    assert third.count("updated") == 1 and third.links_added == 2  # both notes linking to Ana point at her new chunk
    now = mem._ctx.store.catalog.links_of_kind("wikilink")
    by_id = {m.id: m for m in mem.list(limit=50).memories}
    assert len(now) == 4 and all(s in by_id and d in by_id for s, d in now)
    assert sum(1 for _, d in now if by_id[d].text == "Ana now runs the harbour museum.") == 2


def test_logseq_pages_namespaces_aliases_and_properties(mem: Memcli, tmp_path: Path) -> None:
    root = tmp_path / "graph"
    write(root / "logseq" / "config.edn", "{:meta/version 1}")
    write(root / "journals" / "2024_03_02.md", "- Called the plumber about [[Home/Boiler]]\n- Booked #[[Car Service]]\n")
    write(root / "pages" / "Home___Boiler.md", "tags:: house, repairs\n\n- The boiler is a Vaillant from 2015.\n")
    write(root / "pages" / "garage.md", "alias:: Car Service\n\n- The garage on Rua Nova services the car in April.\n")
    mem.ingest([root])
    by_id = {m.id: m for m in mem.list(limit=50).memories}
    named = {(Path(by_id[s].source).stem, Path(by_id[d].source).stem) for s, d in mem._ctx.store.catalog.links_of_kind("wikilink")}
    assert named == {("2024_03_02", "Home___Boiler"), ("2024_03_02", "garage")}
    boiler = next(m for m in by_id.values() if "Vaillant" in m.text)
    assert {"house", "repairs"} <= set(boiler.tags)
    journal = next(m for m in by_id.values() if "plumber" in m.text)
    assert journal.event_at is not None and journal.event_at.astimezone().date().isoformat() == "2024-03-02"


def test_org_mode_headings_times_and_tags(mem: Memcli, tmp_path: Path) -> None:
    org = """#+TITLE: Garden log
#+FILETAGS: :garden:
* Planting <2024-03-01 Fri> :tomato:
Sowed San Marzano seeds in the greenhouse.
** Watering
  Twice a week until they sprout.
* Harvest
  CLOSED: [2024-08-01 Thu 09:00]
  :PROPERTIES:
  :YIELD: 12kg
  :END:
  Twelve kilos of tomatoes, most of them ripe at once.
* Projects
** TODO Fix the fence by the compost
"""
    mem.ingest([write(tmp_path / "garden.org", org)])
    ms = {m.text: m for m in mem.list(limit=50).memories}
    assert set(ms) == {
        "Sowed San Marzano seeds in the greenhouse.",
        "Twice a week until they sprout.",
        "Twelve kilos of tomatoes, most of them ripe at once.",
        "TODO Fix the fence by the compost",
    }
    sow = ms["Sowed San Marzano seeds in the greenhouse."]
    assert sow.event_at is not None and sow.event_at.astimezone().date().isoformat() == "2024-03-01"
    assert set(sow.tags) == {"garden", "tomato"} and "Garden log > Planting" in sow.keys
    assert ms["Twice a week until they sprout."].event_at == sow.event_at  # a subheading without a time: its parent's
    harvest = ms["Twelve kilos of tomatoes, most of them ripe at once."]
    assert harvest.event_at == datetime(2024, 8, 1, 9, 0).astimezone()  # [2024-08-01 Thu 09:00] is local time
    hits = mem.recall("tomatoes", since=datetime(2024, 7, 1).astimezone(), k=1).hits
    assert hits[0].memory.id == harvest.id


def test_html_article_text_without_scripts_styles_or_navigation(mem: Memcli, tmp_path: Path) -> None:
    page = """<!doctype html><html><head><title>Keeping a sourdough starter</title>
<meta name="keywords" content="baking, bread"><meta property="article:published_time" content="2024-04-05T10:00:00Z">
<style>body { color: SECRETSTYLE }</style><script>var tracker = "SECRETSCRIPT";</script></head>
<body><header><a href="/">My Blog</a></header><nav><ul><li>Home</li><li>NAVLINK</li></ul></nav>
<article><h1>Keeping a sourdough starter</h1><p>My starter is called <b>Clint</b> &amp; lives in the fridge.</p>
<h2>Feeding</h2><ul><li>50 g rye flour</li><li>50 g water, once a week</li></ul>
<script>alert("SECRETSCRIPT")</script></article><aside>SIDEBAR ads</aside><footer>© FOOTER 2024</footer></body></html>"""
    mem.ingest([write(tmp_path / "saved" / "starter.html", page)])
    ms = mem.list(limit=50).memories
    text = "\n".join(m.text for m in ms)
    assert "Clint & lives in the fridge" in text and "50 g rye flour" in text
    for junk in ("SECRETSCRIPT", "SECRETSTYLE", "NAVLINK", "SIDEBAR", "FOOTER", "My Blog"):
        assert junk not in text and not any(junk in m.keys for m in ms), junk
    feeding = next(m for m in ms if "rye" in m.text)
    assert "Keeping a sourdough starter > Feeding" in feeding.keys and set(feeding.tags) == {"baking", "bread"}
    assert feeding.event_at == datetime(2024, 4, 5, 10, 0, tzinfo=UTC)


def test_progress_reports_messages_with_totals(mem: Memcli, tmp_path: Path) -> None:
    write(tmp_path / "in" / "export.json", json.dumps(chatgpt_export()))
    write(tmp_path / "in" / "note.md", "A note about kites.")
    seen: list[IngestProgress] = []
    mem.ingest([tmp_path / "in"], progress=seen.append)
    reading = [p for p in seen if p.reading]
    embedding = [p for p in seen if not p.reading]
    assert reading and reading[0].files_total == 2
    assert embedding and all(p.chunks_total == 7 and p.messages_total == 6 for p in embedding)
    last = embedding[-1]
    assert (last.chunks_done, last.messages_done, last.files_done) == (7, 6, 2)
    done = [p.chunks_done for p in embedding]
    assert done == sorted(done)  # never goes backwards
