"""Locations the whole project agrees on, read from the environment."""

from __future__ import annotations

import os
from pathlib import Path

DEFAULT_DATA_DIR = "./.amr/data"
DEFAULT_SEEDS_DIR = "./seeds"


def data_dir() -> Path:
    """Root of every stage's Parquet output: ``$AMR_DATA_DIR`` (default ``./.amr/data``)."""
    return Path(os.environ.get("AMR_DATA_DIR", DEFAULT_DATA_DIR))


def seeds_dir() -> Path:
    """Where the sensor looks for new seed batches: ``$AMR_SEEDS_DIR`` (default ``./seeds``)."""
    return Path(os.environ.get("AMR_SEEDS_DIR", DEFAULT_SEEDS_DIR))


def cache_dir() -> Path:
    """Machine-local caches (assembled model files, built images): ``$AMR_CACHE_DIR``."""
    return Path(os.environ.get("AMR_CACHE_DIR", Path.home() / ".cache" / "amr-dagster"))
