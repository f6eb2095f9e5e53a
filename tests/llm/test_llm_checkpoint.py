"""The embedded GGUF as a Hugging Face checkpoint: converted once, checksum-verified, ``<bos>`` handled."""

from __future__ import annotations

import builtins
import json
import time

import pytest

from tests.llm.vllm_fixtures import checkpoint, fewshot_prompt, llama  # noqa: F401

from amr_dagster.llm import checkpoint as ckpt_module  # noqa: E402
from amr_dagster.llm.checkpoint import (  # noqa: E402
    MANIFEST,
    TOKEN_PROBES,
    CheckpointUnavailable,
    check_same_tokens,
    checkpoint_token_ids,
    embedded_checkpoint,
    verify_checkpoint,
)
from amr_dagster.llm.embedded_model import embedded_model_path  # noqa: E402

pytestmark = [pytest.mark.vllm]


def test_converted_once_then_only_verified(checkpoint):  # noqa: F811
    started = time.perf_counter()
    again = embedded_checkpoint()
    assert time.perf_counter() - started < 30  # no second conversion (that takes minutes)
    assert again == checkpoint
    manifest = json.loads((checkpoint.path / MANIFEST).read_text())
    assert {"model.safetensors", "config.json", "tokenizer.json"} <= set(manifest["files"])
    assert "quantization_config" not in json.loads((checkpoint.path / "config.json").read_text())


def test_tokenizer_adds_bos_and_matches_llama_cpp(checkpoint, llama):  # noqa: F811
    prompts = list(TOKEN_PROBES) + [fewshot_prompt("Write a function `mean(xs)` returning the average.")]
    ids = checkpoint_token_ids(checkpoint.path, prompts)
    bos = llama.llm.token_bos()
    assert all(row[0] == bos and row.count(bos) == 1 for row in ids)
    check_same_tokens(checkpoint.path, embedded_model_path(), prompts)  # raises on any difference


def test_tampered_file_is_refused_with_its_name(checkpoint, tmp_path):  # noqa: F811
    copy = tmp_path / "ckpt"
    copy.mkdir()
    for f in checkpoint.path.iterdir():
        if f.name == "tokenizer_config.json":
            (copy / f.name).write_text(f.read_text().replace('"<bos>"', '"<eos>"'))
        elif f.name != ".verified.json":
            (copy / f.name).symlink_to(f)
    with pytest.raises(CheckpointUnavailable, match="tokenizer_config.json: sha256 .* does not match"):
        verify_checkpoint(copy)


def test_missing_conversion_packages_are_named(monkeypatch):
    real_import = builtins.__import__

    def no_gguf(name, *args, **kwargs):
        if name == "gguf":
            raise ImportError("No module named 'gguf'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_gguf)
    with pytest.raises(CheckpointUnavailable, match=r"needs gguf .*amr-dagster\[vllm-cpu\]"):
        ckpt_module._conversion_modules()
