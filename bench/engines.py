"""Benchmark: vLLM batched vs llama.cpp one sequence at a time, on the pipeline's own I->R prompts.

Workload: the I->R (``responses``) requests the pipeline builds, with its own builders and its
default ``GenerationConfig``: real instructions (the few-shot library's, ``--instructions`` of
them), each in the pipeline's few-shot layout (``response_shots`` shots drawn per shot set,
``shot_sets`` sets, the category's shot last), ``n_samples`` samples per instruction at
``response_temperature`` / ``top_p``, ``response_max_tokens`` new tokens. Every sample is one
sequence (as ``CachedEngine`` sends them), so 16 instructions x 4 samples = 64 prompts.

Both engines get the same prompt token ids (llama.cpp's tokenization of each prompt; asserted
equal to the converted checkpoint's, and to what vLLM reports it ran) and generate exactly
``max_tokens`` tokens per prompt (end of sequence ignored, no stop strings: llama.cpp takes
that many tokens from ``Llama.generate``, vLLM gets ``ignore_eos`` and ``min_tokens =
max_tokens``), so tokens/s compares equal work.

- llama.cpp: today's embedded path, the GGUF (Q4_K_M), one sequence at a time in prefix-sharing
  order (``LlamaCppEngine.batch_order``), KV reuse of the shared prefix.
- vLLM: the converted checkpoint (float32 on CPUs without native bf16, see ``cpu_dtype``), all
  prompts in one ``run_batch`` call (one prefill per distinct prompt, then every sample), prefix
  caching on (its prefix cache is reset before each run); sampled top-p tokens drawn by the
  project's nucleus processor.

Order: llama.cpp, vLLM, llama.cpp again; llama.cpp's figure is the mean of the two runs around
the vLLM run, so a load change on a shared machine hits both. vLLM is started after the first
llama.cpp run and closed before the second, so llama.cpp never shares the machine with vLLM's
processes (their message-queue readers busy-poll after each step). Engine start (including one short
warm-up call) is excluded and reported apart. ``uptime`` is printed before and after.
Seeds: llama.cpp samples with the per-sample seeds; vLLM's CPU build runs unseeded (seeded
batches crash it).

The last line is exactly ``engines: vllm <x>x llama.cpp tokens/s, <n> prompts``.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from dataclasses import replace

from amr_dagster.generation.config import GenerationConfig
from amr_dagster.generation.fewshot import default_library
from amr_dagster.generation.prompting import default_templates
from amr_dagster.generation.responses import response_request
from amr_dagster.ids import row_id
from amr_dagster.llm.base import LLMRequest, per_sample


def uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


def response_requests(instructions: int, config: GenerationConfig) -> list[LLMRequest]:
    """The pipeline's I->R requests for the library's first ``instructions`` instructions, one per sample."""
    library, templates = default_library(), default_templates()
    examples = list(library.examples)
    if instructions > len(examples):
        raise SystemExit(f"the few-shot library holds {len(examples)} instructions, asked for {instructions}")
    requests = []
    for example in examples[:instructions]:
        parent_id = row_id("bench-engines", example.id)
        request, _, _ = response_request(parent_id, example.category, example.instruction, config, library, templates)
        requests.extend(per_sample(request))
    return requests


def run_llama(engine, requests: list[LLMRequest], ids: list[list[int]]) -> tuple[float, int]:
    """One sequence at a time, exactly ``max_tokens`` tokens each; (seconds, generated tokens)."""
    generated = 0
    started = time.perf_counter()
    for k in engine.batch_order(requests):
        p = requests[k].params
        engine.llm.set_seed(p.seed if p.seed is not None else 0xFFFFFFFF)
        produced = 0
        gen = engine.llm.generate(ids[k], **engine.sampler_args(p))
        try:
            for _ in gen:
                produced += 1
                if produced >= p.max_tokens:
                    break
        finally:
            gen.close()
        assert produced == p.max_tokens, (k, produced)
        generated += produced
    return time.perf_counter() - started, generated


def run_vllm(engine, requests: list[LLMRequest], ids: list[list[int]]) -> tuple[float, int]:
    """All prompts in one ``generate`` call; (seconds, generated tokens)."""
    engine.llm.reset_prefix_cache()
    params = [
        engine.sampling_params(r, ignore_eos=True, min_tokens=r.params.max_tokens) for r in requests
    ]
    started = time.perf_counter()
    outputs = engine.run_batch(ids, params)
    elapsed = time.perf_counter() - started
    for k, output in enumerate(outputs):
        assert list(output.prompt_token_ids) == ids[k], f"vLLM ran other prompt ids for prompt {k}"
        assert len(output.outputs[0].token_ids) == requests[k].params.max_tokens, (k, len(output.outputs[0].token_ids))
    return elapsed, sum(len(o.outputs[0].token_ids) for o in outputs)


def main(argv: list[str] | None = None) -> None:
    from amr_dagster.llm.checkpoint import checkpoint_token_ids, embedded_checkpoint
    from amr_dagster.llm.llama_cpp_engine import LlamaCppEngine
    from amr_dagster.llm.vllm_engine import VLLMEngine

    defaults = GenerationConfig()
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n", 1)[0])
    parser.add_argument("--instructions", type=int, default=16)
    parser.add_argument("--samples", type=int, default=defaults.n_samples)
    parser.add_argument("--max-tokens", type=int, default=defaults.response_max_tokens)
    parser.add_argument("--threads", type=int, default=0, help="llama.cpp threads (0 = all cores, the engine's default)")
    parser.add_argument("--enforce-eager", action="store_true", help="vLLM without graph compilation (cheaper start)")
    args = parser.parse_args(argv)

    config = replace(defaults, n_samples=args.samples, response_max_tokens=args.max_tokens)
    requests = [
        replace(r, params=replace(r.params, stop=()))  # equal work: no stop strings, fixed length
        for r in response_requests(args.instructions, config)
    ]
    print(f"load before: {uptime()}", flush=True)

    started = time.perf_counter()
    llama = LlamaCppEngine(n_threads=args.threads or None)
    ids = [llama.prompt_token_ids(r) for r in requests]
    llama_start = time.perf_counter() - started

    checkpoint = embedded_checkpoint()
    texts = [r.prompt or "" for r in requests]
    assert checkpoint_token_ids(checkpoint.path, texts) == ids, "vLLM's tokenizer and llama.cpp disagree"
    prompt_tokens = sum(len(i) for i in ids)
    print(
        f"{len(requests)} prompts ({args.instructions} instructions x {args.samples} samples), "
        f"{prompt_tokens / len(ids):.0f} prompt tokens on average, {args.max_tokens} new tokens each, "
        f"temperature {config.response_temperature}, top_p {config.top_p}; same prompt ids on both engines",
        flush=True,
    )
    l1_s, l1_tokens = run_llama(llama, requests, ids)
    print(f"llama.cpp run 1: {l1_s:7.1f}s {l1_tokens} tokens {l1_tokens / l1_s:7.1f} tok/s "
          f"(one sequence at a time, threads {args.threads or 'all'})", flush=True)

    started = time.perf_counter()
    vllm = VLLMEngine(checkpoint.path.as_posix(), enforce_eager=args.enforce_eager)
    warm = [replace(requests[0], params=replace(requests[0].params, max_tokens=4))]
    run_vllm(vllm, warm, ids[:1])
    vllm_start = time.perf_counter() - started
    print(f"engine start (excluded): llama.cpp {llama_start:.1f}s ({llama.model_id}), "
          f"vLLM {vllm_start:.1f}s ({vllm.model_id}, seeded={vllm.seeded}, eager={args.enforce_eager})", flush=True)
    v_s, v_tokens = run_vllm(vllm, requests, ids)
    print(f"vllm:            {v_s:7.1f}s {v_tokens} tokens {v_tokens / v_s:7.1f} tok/s (one batch)", flush=True)
    vllm.close()

    l2_s, l2_tokens = run_llama(llama, requests, ids)
    print(f"llama.cpp run 2: {l2_s:7.1f}s {l2_tokens} tokens {l2_tokens / l2_s:7.1f} tok/s", flush=True)
    llama.close()
    print(f"load after: {uptime()}")

    vllm_tps = v_tokens / v_s
    llama_tps = (l1_tokens / l1_s + l2_tokens / l2_s) / 2
    print(f"engines: vllm {vllm_tps / llama_tps:.2f}x llama.cpp tokens/s, {len(requests)} prompts")


if __name__ == "__main__":  # vLLM starts its engine core with multiprocessing: keep the guard
    sys.exit(main())
