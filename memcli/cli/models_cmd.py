"""memcli models list | import | pull."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from memcli.cli.common import JsonOpt

app = typer.Typer(rich_markup_mode=None, help="Embedding and chat models: list, import a checkpoint, download.", no_args_is_help=True)


@app.command("list")
def list_(json_: JsonOpt = False) -> None:
    """Installed GGUF models, and the recommended ones you can pull."""
    from memcli import api, ui

    listing = api.models()
    if json_:
        return ui.emit_json("models list", listing.to_json())
    ui.table(
        ["installed model", "size", "in use", "from"],
        [(m.name, f"{m.size_bytes / 1e6:.1f} MB", m.in_use, m.origin) for m in listing.installed],
    )
    ui.table(
        ["recommended (memcli models pull NAME)", "kind", "size", "installed"],
        [(m.name, m.kind, f"{(m.size_bytes or 0) / 1e6:.0f} MB", "yes" if m.installed else "") for m in listing.recommended],
    )


@app.command("import")
def import_(
    src: Annotated[Path, typer.Argument(help="A Hugging Face BERT-family sentence-embedding checkpoint directory.")],
    name: Annotated[Optional[str], typer.Option("--name", help="Model name (default: the directory name).")] = None,  # noqa: UP045
    json_: JsonOpt = False,
) -> None:
    """Convert a local checkpoint (config.json, model.safetensors, vocab.txt) into a GGUF embedding model."""
    from memcli import api, ui

    result = api.import_model(src, name=name)
    if json_:
        return ui.emit_json(
            "models import", {"path": str(result.path), "name": result.name, "dim": result.dim, "sha256": result.sha256}
        )
    ui.line(f"converted {src} -> {result.path} ({result.dim} dimensions, {result.n_layers} layers)")
    config_file = dict(api.locations())["config"]
    ui.line(f'use it: set [embedding] model = "{result.path.name}" in {config_file}, then run `memcli reindex`')


@app.command()
def pull(
    name: Annotated[str, typer.Argument(help="A recommended model name (`memcli models list`) or hf:OWNER/REPO/FILE.gguf.")],
    json_: JsonOpt = False,
) -> None:
    """Download a GGUF model from the Hugging Face hub (the only command that uses the network)."""
    from memcli import api, ui

    if json_ or not ui.is_terminal():
        result = api.pull_model(name)
    else:
        from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TransferSpeedColumn

        with Progress(TextColumn(name), BarColumn(), DownloadColumn(), TransferSpeedColumn(), transient=True) as bar:
            task = bar.add_task("pull", total=None)
            result = api.pull_model(name, progress=lambda done, total: bar.update(task, completed=done, total=total))
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
