"""The embedded default seed batch: source files of the running interpreter's standard library.

Written once as a JSONL file in The Stack's layout (``content``, ``path``, ``repo``,
``license``), so the default run exercises the same reader as any user corpus. The file
selection is deterministic (sorted paths, evenly spaced), so every machine with the same
Python builds the same batch and therefore the same partition key.
"""

from __future__ import annotations

import json
import os
import sys
import sysconfig
from pathlib import Path

# Packages whose code is GUI, tests, or vendored tooling: poor seeds, and large.
_SKIP_PARTS = {"test", "tests", "idlelib", "tkinter", "turtledemo", "lib2to3", "ensurepip", "site-packages", "dist-packages", "__pycache__", "pydoc_data", "venv", "distutils"}


def stdlib_files() -> list[Path]:
    root = Path(sysconfig.get_paths()["stdlib"])
    files = []
    for path in root.rglob("*.py"):
        rel = path.relative_to(root)
        if _SKIP_PARTS.intersection(rel.parts[:-1]) or rel.name.startswith("test_"):
            continue
        files.append(path)
    return sorted(files, key=lambda p: p.relative_to(root).as_posix())


def write_stdlib_batch(folder: Path, max_files: int = 0) -> Path:
    """Write (or reuse) the batch file of ``max_files`` evenly spaced stdlib files (0 = all)."""
    root = Path(sysconfig.get_paths()["stdlib"])
    files = stdlib_files()
    if max_files and max_files < len(files):
        step = len(files) / max_files
        files = [files[int(i * step)] for i in range(max_files)]
    version = f"{sys.version_info.major}.{sys.version_info.minor}.{sys.version_info.micro}"
    name = f"stdlib-py{version}-{'all' if not max_files else f'{len(files)}files'}.jsonl"
    target = folder / name
    if target.is_file():
        return target
    folder.mkdir(parents=True, exist_ok=True)
    tmp = target.with_suffix(".jsonl.tmp")
    with tmp.open("w", encoding="utf-8") as out:
        for path in files:
            text = path.read_bytes().decode("utf-8", errors="surrogateescape")
            record = {
                "path": path.relative_to(root).as_posix(),
                "repo": f"cpython-stdlib-{version}",
                "license": "PSF-2.0",
                "content": text.encode("utf-8", errors="replace").decode("utf-8"),
            }
            out.write(json.dumps(record) + "\n")
    os.replace(tmp, target)
    return target
