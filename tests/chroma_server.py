"""A real Chroma server for tests: `chroma run` on 127.0.0.1, a free port, a temp dir.

Each test gets its own database on the one server (a fresh, empty store) instead of its own server:
starting one costs about a second, a database a few milliseconds.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import httpx

# chromadb's `chroma` command, run by this interpreter (a copied venv's script may name another one).
CHROMA = [sys.executable, "-c", "import sys; from chromadb.cli.cli import app; sys.argv[0] = 'chroma'; sys.exit(app())"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class ChromaServer:
    path: Path
    port: int
    proc: subprocess.Popen[bytes]
    log: Path
    databases: list[str] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @classmethod
    def start(cls, path: Path, timeout: float = 60.0, port: int | None = None) -> ChromaServer:
        port = port or free_port()
        path.mkdir(parents=True, exist_ok=True)
        log = path / "server.log"
        env = {k: v for k, v in os.environ.items() if not k.startswith("CHROMA_")}
        env["ANONYMIZED_TELEMETRY"] = "False"
        with open(log, "wb") as out:
            proc = subprocess.Popen(
                [*CHROMA, "run", "--path", str(path / "data"), "--host", "127.0.0.1", "--port", str(port)],
                stdout=out,
                stderr=subprocess.STDOUT,
                env=env,
            )
        server = cls(path, port, proc, log)
        deadline = time.monotonic() + timeout
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"chroma run exited with {proc.returncode}:\n{log.read_text(errors='replace')[-3000:]}")
            try:
                if httpx.get(server.url + "/api/v2/heartbeat", timeout=1.0, trust_env=False).status_code == 200:
                    return server
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                server.stop()
                raise RuntimeError(f"chroma run did not answer within {timeout} s:\n{log.read_text(errors='replace')[-3000:]}")
            time.sleep(0.1)

    def new_database(self) -> str:
        name = "t" + uuid.uuid4().hex[:12]
        r = httpx.post(f"{self.url}/api/v2/tenants/default_tenant/databases", json={"name": name}, timeout=10.0, trust_env=False)
        r.raise_for_status()
        self.databases.append(name)
        return name

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
