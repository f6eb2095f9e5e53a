"""Locations the whole project agrees on, read from the environment."""

from __future__ import annotations

import os
from pathlib import Path

DEFAULT_DATA_DIR = "./.amr/data"
DEFAULT_SEEDS_DIR = "./seeds"


def data_root() -> str:
    """Root of every stage's output: ``$AMR_DATA_DIR`` (default ``./.amr/data``), a local folder
    or ``s3://bucket/prefix``."""
    return os.environ.get("AMR_DATA_DIR", DEFAULT_DATA_DIR)


def data_dir() -> Path:
    """The data root as a local folder; refuses an ``s3://`` root (use ``data_root()`` and
    ``amr_dagster.storage.objectstore`` for code that must work on both)."""
    root = data_root()
    if root.startswith("s3://"):
        raise ValueError(f"the data root {root} is in S3, not a local folder")
    return Path(root)


def seeds_root() -> str:
    """Where the sensor looks for new seed batches: ``$AMR_SEEDS_DIR`` (default ``./seeds``),
    a local folder or ``s3://bucket/prefix``."""
    return os.environ.get("AMR_SEEDS_DIR", DEFAULT_SEEDS_DIR)


def seeds_dir() -> Path:
    """Where the sensor looks for new seed batches: ``$AMR_SEEDS_DIR`` (default ``./seeds``)."""
    return Path(os.environ.get("AMR_SEEDS_DIR", DEFAULT_SEEDS_DIR))


def cache_dir() -> Path:
    """Machine-local caches (assembled model files, built images): ``$AMR_CACHE_DIR``."""
    return Path(os.environ.get("AMR_CACHE_DIR", Path.home() / ".cache" / "amr-dagster"))
