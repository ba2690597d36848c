"""memcli models list | import | pull."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from memcli.cli.common import JsonOpt
from memcli.paths import Paths

app = typer.Typer(rich_markup_mode=None, help="Embedding and chat models: list, import a checkpoint, download.", no_args_is_help=True)


def _paths() -> Paths:

    return Paths.resolve()


@app.command("list")
def list_(json_: JsonOpt = False) -> None:
    """Installed GGUF models, and the recommended ones you can pull."""
    from memcli import config, ui
    from memcli.models.catalog import CATALOG
    from memcli.models.starter import STARTER_FILE, STARTER_PIP_NAME, starter_path

    paths = _paths()
    settings = config.load(paths.config_file)
    configured, chat_model = settings.embedding.model, settings.chat.model
    installed = sorted(paths.models_dir.glob("*.gguf")) if paths.models_dir.exists() else []
    starter = starter_path()
    if starter is not None:
        installed.append(starter)  # lives in its pip package, not in the models folder

    def in_use(p: Path) -> str:
        if (configured in (p.name, str(p))) or (not configured and p.name == "all-MiniLM-L6-v2.gguf"):
            return "embedding"
        if (chat_model and chat_model in (p.name, str(p))) or (not chat_model and p.name == STARTER_FILE):
            return "chat" if settings.chat.backend == "llama" else ""
        return ""

    rows: list[dict[str, Any]] = [
        {
            "name": p.name,
            "path": str(p),
            "size_bytes": p.stat().st_size,
            "installed": True,
            "in_use": in_use(p),
            "from": f"pip package {STARTER_PIP_NAME}" if p == starter else "models folder",
        }
        for p in installed
    ]
    names = {p.name for p in installed}
    recommended = [
        {
            "name": m.name,
            "kind": m.kind,
            "file": m.local_name,
            "size_bytes": m.size_bytes,
            "installed": m.local_name in names,
            "description": m.description,
        }
        for m in CATALOG
    ]
    if json_:
        return ui.emit_json("models list", {"models_dir": str(paths.models_dir), "installed": rows, "recommended": recommended})
    ui.table(
        ["installed model", "size", "in use", "from"],
        [(r["name"], f"{float(r['size_bytes']) / 1e6:.1f} MB", r["in_use"], r["from"]) for r in rows],
    )
    ui.table(
        ["recommended (memcli models pull NAME)", "kind", "size", "installed"],
        [
            (r["name"], r["kind"], f"{float(r['size_bytes'] or 0) / 1e6:.0f} MB", "yes" if r["installed"] else "")
            for r in recommended
        ],
    )


@app.command("import")
def import_(
    src: Annotated[Path, typer.Argument(help="A Hugging Face BERT-family sentence-embedding checkpoint directory.")],
    name: Annotated[Optional[str], typer.Option("--name", help="Model name (default: the directory name).")] = None,  # noqa: UP045
    json_: JsonOpt = False,
) -> None:
    """Convert a local checkpoint (config.json, model.safetensors, vocab.txt) into a GGUF embedding model."""
    from memcli import ui
    from memcli.models.convert import convert_bert
    from memcli.paths import ensure_private_dir

    paths = _paths()
    ensure_private_dir(paths.models_dir)
    model_name = name or src.resolve().name
    result = convert_bert(src, paths.models_dir / f"{model_name}.gguf", name=model_name)
    if json_:
        return ui.emit_json(
            "models import", {"path": str(result.path), "name": result.name, "dim": result.dim, "sha256": result.sha256}
        )
    ui.line(f"converted {src} -> {result.path} ({result.dim} dimensions, {result.n_layers} layers)")
    ui.line(f'use it: set [embedding] model = "{result.path.name}" in {paths.config_file}, then run `memcli reindex`')


@app.command()
def pull(
    name: Annotated[str, typer.Argument(help="A recommended model name (`memcli models list`) or hf:OWNER/REPO/FILE.gguf.")],
    json_: JsonOpt = False,
) -> None:
    """Download a GGUF model from the Hugging Face hub (the only command that uses the network)."""
    from memcli import ui
    from memcli.models.pull import pull as do_pull

    paths = _paths()
    if json_ or not ui.is_terminal():
        result = do_pull(name, paths.models_dir)
    else:
        from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TransferSpeedColumn

        with Progress(TextColumn(name), BarColumn(), DownloadColumn(), TransferSpeedColumn(), transient=True) as bar:
            task = bar.add_task("pull", total=None)
            result = do_pull(name, paths.models_dir, progress=lambda done, total: bar.update(task, completed=done, total=total))
    if json_:
        return ui.emit_json(
            "models pull",
            {
                "name": result.name,
                "path": str(result.path),
                "sha256": result.sha256,
                "size_bytes": result.size_bytes,
                "verified": result.verified,
                "resumed": result.resumed,
            },
        )
    ui.line(
        f"{result.path} ({result.size_bytes / 1e6:.1f} MB) sha256 {result.sha256[:16]}… "
        + ("verified" if result.verified else "NOT verified: no known checksum")
    )
