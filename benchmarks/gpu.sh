#!/usr/bin/env bash
# The GPU figures in one run, for a machine with an NVIDIA card: the card's name, then
# `whisper-eas bench --device cuda` (ours float16 dense / EAS vs faster-whisper float16 and
# int8_float16, batch 1) and the batched throughput in float16, dense and with EAS. Every table's
# header names the card. Needs the dev corpus in data/corpus (python benchmarks/corpus.py, or
# carry data/corpus to a machine without network) and a CUDA build of torch.
#
#     bash benchmarks/gpu.sh [MODEL]          # MODEL: tiny.en (default) or base
set -euo pipefail
cd "$(dirname "$0")/.."
model="${1:-tiny.en}"
out="runs/gpu"
mkdir -p "$out"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$out/card.txt"
whisper-eas bench data/corpus/dev-short.jsonl --model "$model" --device cuda \
  --json "$out/bench-$model.json" --markdown "$out/bench-$model.md"
python benchmarks/throughput.py data/corpus/dev-short.jsonl --model "$model" --device cuda \
  --batch-sizes 1,4,8,16,32 | tee "$out/throughput-$model.md"
