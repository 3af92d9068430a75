#!/usr/bin/env bash
# The GPU figures in one run, for a machine with an NVIDIA card: the card's name, then
# `whisper-eas bench --device cuda` (ours float16 dense / EAS vs faster-whisper float16 and
# int8_float16, batch 1) and the batched throughput in float16, dense and with EAS. Every table's
# header names the card. Needs the dev corpus in data/corpus (python benchmarks/corpus.py, or
# carry data/corpus to a machine without network) and a CUDA build of torch. Where faster-whisper
# (CTranslate2 built for this CUDA) is not installed, its rows are skipped and the ratios are
# against our dense float16 run instead. With data/corpus/longform-dev.jsonl present it also runs
# the long-form set in user mode (VAD chunks, timestamps, fallback), dense against EAS.
#
#     bash benchmarks/gpu.sh [MODEL]          # MODEL: tiny.en (default) or base
set -euo pipefail
cd "$(dirname "$0")/.."
model="${1:-tiny.en}"
out="runs/gpu"
mkdir -p "$out"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$out/card.txt"
baseline=()
python -c "import faster_whisper" 2>/dev/null || baseline=(--baseline ours:float16)
whisper-eas bench data/corpus/dev-short.jsonl --model "$model" --device cuda "${baseline[@]}" \
  --json "$out/bench-$model.json" --markdown "$out/bench-$model.md"
python benchmarks/throughput.py data/corpus/dev-short.jsonl --model "$model" --device cuda \
  --batch-sizes 1,4,8,16,32 | tee "$out/throughput-$model.md"
if [ -f data/corpus/longform-dev.jsonl ]; then
  whisper-eas bench data/corpus/longform-dev.jsonl --model "$model" --device cuda --mode user \
    --engines 'ours:float16:off,ours:float16:0:0.3 score=adjacent pad=32,ours:float16:0:0.5 score=adjacent pad=32' \
    --baseline ours:float16:off --json "$out/longform-$model.json" --markdown "$out/longform-$model.md"
fi
