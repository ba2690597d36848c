"""Configuration: the annotated default file is the schema; precedence; clear errors."""

from __future__ import annotations

import re
import tomllib
from dataclasses import fields
from pathlib import Path

import pytest

from memcli import config
from memcli.errors import ExitCode, MemcliFailure

REPO = Path(__file__).resolve().parent.parent


def test_default_file_is_what_the_program_loads_and_documents_every_key(tmp_path: Path) -> None:
    text = (REPO / "config" / "default.toml").read_text()
    assert config.default_config_text() == text
    data = tomllib.loads(text)
    assert set(data) == set(config.SECTIONS)
    for section, cls in config.SECTIONS.items():
        assert set(data[section]) == {f.name for f in fields(cls)}, section
    # Every key has a comment line directly above it (or above the key group it starts).
    lines = text.splitlines()
    for i, line in enumerate(lines):
        if re.match(r"^[a-z_]+ = ", line):
            above = lines[i - 1]
            assert above.startswith("#") or re.match(r"^[a-z_]+ = ", above), f"undocumented key: {line}"
    s = config.load(tmp_path / "absent.toml", env={})
    assert all(src == "default" for *_, src in s.items())


def test_precedence_file_env_flag(tmp_path: Path) -> None:
    f = tmp_path / "c.toml"
    f.write_text("[recall]\nk = 7\ncandidates = 30\n[store]\nspace = 'work'\n")
    s = config.load(f, env={"MEMCLI_RECALL_K": "3"}, overrides={("store", "space"): "personal"})
    assert s.recall.k == 3 and s.sources[("recall", "k")] == "env MEMCLI_RECALL_K"
    assert s.recall.candidates == 30 and s.sources[("recall", "candidates")] == f"file {f}"
    assert s.store.space == "personal" and s.sources[("store", "space")] == "flag"
    assert s.recall.rrf_k == 10 and s.sources[("recall", "rrf_k")] == "default"


@pytest.mark.parametrize(
    ("content", "needle"),
    [
        ("[recall\nk = 3", "not valid TOML"),
        ("[recall]\nkk = 3\n", "unknown key 'kk' in [recall]"),
        ("[recal]\nk = 3\n", "unknown section [recal]"),
        ("[recall]\nk = 'ten'\n", "[recall] k must be an integer"),
        ("[output]\ncolor = 'purple'\n", "must be one of auto, always, never"),
        ("recall = 3\n", "[recall] must be a table"),
    ],
)
def test_bad_config_names_file_key_and_expectation(tmp_path: Path, content: str, needle: str) -> None:
    f = tmp_path / "config.toml"
    f.write_text(content)
    with pytest.raises(MemcliFailure) as e:
        config.load(f, env={})
    assert e.value.code == ExitCode.CONFIG
    assert needle in e.value.message and str(f) in e.value.message
    assert e.value.hint


def test_bad_env_value_is_named(tmp_path: Path) -> None:
    with pytest.raises(MemcliFailure) as e:
        config.load(tmp_path / "none.toml", env={"MEMCLI_RECALL_K": "many"})
    assert "MEMCLI_RECALL_K" in e.value.message and "integer" in e.value.message


def test_cli_config_show_and_path(cli, home: Path) -> None:  # type: ignore[no-untyped-def]
    home.mkdir(parents=True)
    (home / "config.toml").write_text("[recall]\nk = 4\n")
    r = cli("config", "show", "--json")
    assert r.code == 0
    rows = {row["key"]: row for row in r.json()["data"]}
    assert rows["recall.k"]["value"] == 4 and rows["recall.k"]["source"].startswith("file ")
    assert rows["embedding.model"]["source"] == "env MEMCLI_EMBEDDING_MODEL"
    r = cli("config", "path", "--json")
    assert r.json()["data"]["data"] == str(home / "data")
    (home / "config.toml").write_text("[recall]\nkx = 4\n")
    r = cli("recall", "anything")
    assert r.code == ExitCode.CONFIG
    assert "unknown key 'kx'" in r.err and "Traceback" not in r.err
