"""MinHash signatures and LSH band keys for near-duplicate detection, vectorised over a batch.

What a document means to the dedup (defined here once, used everywhere):

- **Tokens** are the maximal runs of word characters: ASCII letters, digits and ``_``, and every
  non-ASCII character (``TOKEN_PATTERN``). So identifiers, keywords and numbers are tokens;
  operators, punctuation and whitespace only separate them. Case is kept. (Any non-ASCII
  character counts as a word character so that the batch code can find tokens on UTF-8 bytes:
  a byte is a word byte exactly when its character is a word character.)
- **Shingles** are the space-joined runs of ``shingle_size`` consecutive tokens (word n-grams),
  taken as a set. A document with at least one but fewer than ``shingle_size`` tokens has one
  shingle: all of its tokens. A document without tokens has no shingles; its signature is the
  empty-set signature (all ``EMPTY_HASH``) and it can only be an exact duplicate, never a near one.
- **Token hash** (64 bits): ``fmix64(poly + len * GOLDEN)`` where ``poly`` is the polynomial
  ``sum(byte_i * TOKEN_BASE**i) mod 2**64`` over the token's UTF-8 bytes (lone surrogates
  encoded with ``surrogatepass``). A polynomial is what a batch can compute for all tokens at
  once from prefix sums.
- **Shingle hash** (32 bits): the shingle's token hashes folded left to right,
  ``acc = fmix64(acc ^ token_hash)`` from ``SHINGLE_SEED``, top 32 bits. ``shingle_hash`` is the
  plain-Python reference; it is also a valid ``hashfunc`` for ``datasketch.MinHash``.
- **Signature**: exactly datasketch's default ("affine32") scheme: the 32-bit shingle hash is
  pre-mixed with the 32-bit MurmurHash3 finalizer, then permuted with ``a * h + b mod 2**32`` for
  ``num_perm`` odd ``a`` and ``b`` drawn from ``numpy.random.RandomState(seed)`` the way
  datasketch draws them, and the minimum per permutation is kept. So
  ``MinHash(num_perm, seed=seed, hashfunc=shingle_hash)`` fed ``word_shingles(text)`` gives the
  same hash values as ``MinHasher.signatures([text])``.

Why not one ``datasketch.MinHash`` per document: hashing every shingle through a Python call and
running the permutations per document costs far more than the arithmetic itself. Here the whole
batch is one byte array: tokens, token hashes and shingle hashes are a few numpy passes over it,
and the permutations and minima run in one fused loop compiled with numba (cached on disk after
the first use). Chunks of about 1 MiB of text keep memory bounded and can run on several threads.
"""

from __future__ import annotations

import os
import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import lru_cache
from typing import Sequence

import numba
import numpy as np

TOKEN_PATTERN = r"[0-9A-Za-z_\u0080-\U0010ffff]+"
TOKEN_BASE = 0x100000001B3  # odd, so invertible modulo 2**64
GOLDEN = 0x9E3779B97F4A7C15
SHINGLE_SEED = 0x2545F4914F6CDD1D
BAND_SEED = 0xD6E8FEB86659FD93
EMPTY_HASH = np.uint32(0xFFFFFFFF)

_MASK64 = (1 << 64) - 1
_TOKEN_RE = re.compile(TOKEN_PATTERN)
_CHUNK_BYTES = 1 << 20  # text tokenised at once: small arrays are reused, not page-faulted anew
_WORD_BYTE = np.zeros(256, dtype=bool)
for _c in b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz_":
    _WORD_BYTE[_c] = True
_WORD_BYTE[0x80:] = True


def _utf8(text: str | None) -> bytes:
    return (text or "").encode("utf-8", "surrogatepass")


def default_workers() -> int:
    """Threads used for signatures: the CPUs this process may use, at most 4."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cpus = os.cpu_count() or 1
    return max(1, min(4, cpus))


# ---------------------------------------------------------------- reference (one document)


def tokenize(text: str) -> list[str]:
    """The tokens of one document (see the module docstring)."""
    return _TOKEN_RE.findall(text or "")


def word_shingles(text: str, size: int = 5) -> set[str]:
    """The shingle set of one document: the reference definition the batch code must match."""
    tokens = tokenize(text)
    if not tokens:
        return set()
    if len(tokens) < size:
        return {" ".join(tokens)}
    return {" ".join(tokens[i : i + size]) for i in range(len(tokens) - size + 1)}


def _fmix64_int(h: int) -> int:
    h ^= h >> 33
    h = (h * 0xFF51AFD7ED558CCD) & _MASK64
    h ^= h >> 33
    h = (h * 0xC4CEB9FE1A85EC53) & _MASK64
    return h ^ (h >> 33)


def token_hash(token: str | bytes) -> int:
    """64-bit hash of one token (see the module docstring); reference for the batch code."""
    data = token if isinstance(token, bytes) else _utf8(token)
    poly, power = 0, 1
    for byte in data:
        poly = (poly + byte * power) & _MASK64
        power = (power * TOKEN_BASE) & _MASK64
    return _fmix64_int((poly + len(data) * GOLDEN) & _MASK64)


def shingle_hash(shingle: bytes | str) -> int:
    """32-bit hash of one shingle (space-joined tokens); reference for the batch code."""
    data = shingle if isinstance(shingle, bytes) else _utf8(shingle)
    acc = SHINGLE_SEED
    for token in data.split(b" "):
        acc = _fmix64_int(acc ^ token_hash(token))
    return acc >> 32


# ---------------------------------------------------------------- batch (numpy)


def _fmix64(h: np.ndarray) -> np.ndarray:
    h = h ^ (h >> np.uint64(33))
    h = h * np.uint64(0xFF51AFD7ED558CCD)
    h = h ^ (h >> np.uint64(33))
    h = h * np.uint64(0xC4CEB9FE1A85EC53)
    return h ^ (h >> np.uint64(33))


def _fmix32(h: np.ndarray) -> np.ndarray:
    h = h ^ (h >> np.uint32(16))
    h = h * np.uint32(0x85EBCA6B)
    h = h ^ (h >> np.uint32(13))
    h = h * np.uint32(0xC2B2AE35)
    return h ^ (h >> np.uint32(16))


def _powers(base: int, count: int) -> np.ndarray:
    """``base**i mod 2**64`` for i in range(count) (a prefix of a cached table when it fits)."""
    if count <= _CACHED_POWERS:
        return _power_table(base)[:count]
    out = np.full(count, base, dtype=np.uint64)
    if count:
        out[0] = 1
        np.cumprod(out, out=out)
    return out


_CACHED_POWERS = 2 * _CHUNK_BYTES


@lru_cache(maxsize=4)
def _power_table(base: int) -> np.ndarray:
    out = np.full(_CACHED_POWERS, base, dtype=np.uint64)
    out[0] = 1
    np.cumprod(out, out=out)
    out.setflags(write=False)
    return out


def token_hashes_batch(texts: Sequence[str | None]) -> tuple[np.ndarray, np.ndarray]:
    """Hashes of all tokens of all documents in order, and each document's token count."""
    encoded = [_utf8(t) for t in texts]
    lengths = np.fromiter((len(e) for e in encoded), dtype=np.int64, count=len(encoded))
    # documents joined by a newline (a non-word byte), so no token crosses a document boundary
    data = np.frombuffer(b"\n".join(encoded) + b"\n", dtype=np.uint8)
    doc_starts = np.zeros(len(encoded), dtype=np.int64)
    if len(encoded) > 1:
        doc_starts[1:] = np.cumsum(lengths + 1)[:-1]
    edges = np.diff(_WORD_BYTE[data].view(np.int8), prepend=np.int8(0), append=np.int8(0))
    starts = np.flatnonzero(edges == 1)
    ends = np.flatnonzero(edges == -1)
    # polynomial hash of every token from one prefix sum: (H[e] - H[s]) * base**-s
    terms = data.astype(np.uint64)
    terms *= _powers(TOKEN_BASE, data.size)
    prefix = np.zeros(data.size + 1, dtype=np.uint64)
    np.cumsum(terms, out=prefix[1:])
    inverse = _powers(pow(TOKEN_BASE, -1, 1 << 64), data.size)
    poly = (prefix[ends] - prefix[starts]) * inverse[starts]
    hashes = _fmix64(poly + (ends - starts).astype(np.uint64) * np.uint64(GOLDEN))
    counts = np.bincount(np.searchsorted(doc_starts, starts, side="right") - 1, minlength=len(encoded))
    return hashes, counts.astype(np.int64)


def shingle_hashes_batch(texts: Sequence[str | None], shingle_size: int = 5) -> tuple[np.ndarray, np.ndarray]:
    """Shingle hashes of all documents, concatenated in document order, and per-document offsets.

    Document ``d``'s shingle hashes are ``hashes[offsets[d]:offsets[d + 1]]`` (one per shingle
    position, so a repeated shingle repeats its hash: harmless for a minimum).
    """
    if shingle_size < 1:
        raise ValueError("shingle_size must be >= 1")
    token_h, lengths = token_hashes_batch(texts)
    n_tokens = token_h.size
    doc_starts = np.zeros(lengths.size, dtype=np.int64)
    if lengths.size:
        doc_starts[1:] = np.cumsum(lengths)[:-1]
    # Every token position starts a window of up to shingle_size tokens (padded past the end).
    padded = np.concatenate([token_h, np.zeros(shingle_size, dtype=np.uint64)])
    doc_of_token = np.repeat(np.arange(lengths.size), lengths)
    pos_in_doc = np.arange(n_tokens) - doc_starts[doc_of_token]
    len_of_token = lengths[doc_of_token]
    # A window is folded over min(shingle_size, doc length) tokens: a short doc has one window.
    window_len = np.minimum(len_of_token, shingle_size)
    acc = np.full(n_tokens, SHINGLE_SEED, dtype=np.uint64)
    for k in range(shingle_size):
        folded = _fmix64(acc ^ padded[k : k + n_tokens])
        acc = folded if k == 0 else np.where(k < window_len, folded, acc)
    keep = pos_in_doc <= len_of_token - window_len
    hashes = (acc[keep] >> np.uint64(32)).astype(np.uint32)
    counts = np.where(lengths == 0, 0, lengths - np.minimum(lengths, shingle_size) + 1)
    offsets = np.zeros(lengths.size + 1, dtype=np.int64)
    np.cumsum(counts, out=offsets[1:])
    return hashes, offsets


def _chunks(texts: Sequence[str | None]) -> list[tuple[int, int]]:
    """Consecutive document ranges of about ``_CHUNK_BYTES`` characters each."""
    ranges, lo, size = [], 0, 0
    for i, text in enumerate(texts):
        size += len(text or "") + 1
        if size >= _CHUNK_BYTES:
            ranges.append((lo, i + 1))
            lo, size = i + 1, 0
    if lo < len(texts) or not ranges:
        ranges.append((lo, len(texts)))
    return ranges


# ---------------------------------------------------------------- signatures


def datasketch_permutations(num_perm: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The (a, b) of datasketch's affine32 scheme for ``MinHash(num_perm, seed=seed)``."""
    gen = np.random.RandomState(seed)
    a = gen.randint(0, 1 << 31, num_perm, dtype=np.uint32) * np.uint32(2) + np.uint32(1)
    b = gen.randint(0, 1 << 32, num_perm, dtype=np.uint32)
    return a.astype(np.uint32), b.astype(np.uint32)


@dataclass(frozen=True)
class MinHasher:
    """Computes MinHash signatures of whole batches of documents (see the module docstring)."""

    num_perm: int = 256
    seed: int = 1
    shingle_size: int = 5

    def permutations(self) -> tuple[np.ndarray, np.ndarray]:
        return _cached_permutations(self.num_perm, self.seed)

    def signatures(self, texts: Sequence[str | None], workers: int | None = None) -> np.ndarray:
        """A ``(len(texts), num_perm)`` uint32 array; row ``i`` is document ``i``'s signature.

        The batch is cut into chunks of about 1 MiB of text; ``workers`` threads (default: one
        per CPU, at most 4) compute chunks concurrently (numpy and the numba kernel release the
        GIL). The result does not depend on ``workers``.
        """
        texts = list(texts)

        def one_chunk(bounds: tuple[int, int]) -> np.ndarray:
            lo, hi = bounds
            return self.signatures_from_hashes(*shingle_hashes_batch(texts[lo:hi], self.shingle_size))

        chunks = _chunks(texts)
        workers = min(workers or default_workers(), len(chunks))
        if workers > 1:
            with ThreadPoolExecutor(max_workers=workers) as pool:
                parts = list(pool.map(one_chunk, chunks))
        else:
            parts = [one_chunk(c) for c in chunks]
        return np.concatenate(parts) if len(parts) > 1 else parts[0]

    def signatures_from_hashes(self, hashes: np.ndarray, offsets: np.ndarray) -> np.ndarray:
        """Signatures from ``shingle_hashes_batch`` output (the permutation and minimum step)."""
        a, b = self.permutations()
        out = np.full((offsets.size - 1, self.num_perm), EMPTY_HASH, dtype=np.uint32)
        if hashes.size:
            _min_permuted(_fmix32(hashes.astype(np.uint32)), offsets, a, b, out)
        return out


@numba.njit(cache=True, nogil=True)
def _min_permuted(mixed, offsets, a, b, out):  # pragma: no cover - compiled
    """``out[d, k] = min(out[d, k], (a[k] * h + b[k]) mod 2**32)`` over document d's hashes h.

    One fused loop instead of numpy's multiply, add and reduce passes over a
    shingles x permutations block: about five times less work for the same values.
    """
    mask = np.uint64(0xFFFFFFFF)
    for d in range(offsets.size - 1):
        row = out[d]
        for i in range(offsets[d], offsets[d + 1]):
            h = np.uint64(mixed[i])
            for k in range(a.size):
                v = np.uint32((np.uint64(a[k]) * h + np.uint64(b[k])) & mask)
                if v < row[k]:
                    row[k] = v


@lru_cache(maxsize=8)
def _cached_permutations(num_perm: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    a, b = datasketch_permutations(num_perm, seed)
    a.setflags(write=False)
    b.setflags(write=False)
    return a, b


def has_shingles(signatures: np.ndarray) -> np.ndarray:
    """True for documents with at least one shingle (an empty set's signature is all EMPTY_HASH)."""
    return (signatures != EMPTY_HASH).any(axis=1)


def estimated_jaccard(left: np.ndarray, right: np.ndarray) -> np.ndarray:
    """Row-wise estimated Jaccard of two equally shaped signature arrays (share of equal values)."""
    return (left == right).mean(axis=-1)


# ---------------------------------------------------------------- LSH banding


@lru_cache(maxsize=64)
def lsh_params(threshold: float, num_perm: int) -> tuple[int, int]:
    """(bands, rows) minimising false positive + false negative probability at ``threshold``.

    The rule of ``datasketch.MinHashLSH(threshold, num_perm)`` with equal weights (so project
    and baseline band identically): over every ``bands * rows <= num_perm``, minimise
    ``integral_0^t P(candidate | s) ds + integral_t^1 P(missed | s) ds`` with
    ``P(candidate | s) = 1 - (1 - s**rows)**bands``. The integrals are evaluated with
    Gauss-Legendre quadrature in numpy instead of datasketch's per-pair scipy calls.
    """
    nodes, weights = np.polynomial.legendre.leggauss(64)
    below = (nodes + 1) * threshold / 2  # nodes mapped to [0, t]
    above = threshold + (nodes + 1) * (1 - threshold) / 2  # and to [t, 1]
    best, best_error = (1, 1), float("inf")
    for bands in range(1, num_perm + 1):
        rows = np.arange(1, num_perm // bands + 1, dtype=np.float64)[:, None]
        false_pos = (1 - (1 - below[None, :] ** rows) ** bands) @ weights * threshold / 2
        false_neg = ((1 - above[None, :] ** rows) ** bands) @ weights * (1 - threshold) / 2
        error = 0.5 * false_pos + 0.5 * false_neg
        i = int(np.argmin(error))
        if error[i] < best_error:
            best, best_error = (bands, i + 1), float(error[i])
    return best


def band_keys(signatures: np.ndarray, bands: int, rows: int) -> np.ndarray:
    """A ``(n_docs, bands)`` uint64 array: one hash per band of ``rows`` signature values.

    The band index is mixed into the key, so equal keys mean the same band of two signatures
    agrees (up to a 2**-64 collision, and candidates are verified on full signatures anyway).
    """
    if bands * rows > signatures.shape[1]:
        raise ValueError(f"{bands} bands x {rows} rows exceed the signature length {signatures.shape[1]}")
    n_docs = signatures.shape[0]
    values = signatures[:, : bands * rows].reshape(n_docs, bands, rows).astype(np.uint64)
    acc = np.broadcast_to(_fmix64(np.uint64(BAND_SEED) ^ np.arange(bands, dtype=np.uint64)), (n_docs, bands))
    for k in range(rows):
        acc = _fmix64(acc ^ values[:, :, k])
    return np.ascontiguousarray(acc)
