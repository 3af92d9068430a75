#!/usr/bin/env bash
# The search behind docs/search/tiny.en-cpu and the shipped tiny.en CPU profile.
# About 25 minutes on 2 cores (53 configurations x 80 utterances, plus dense twice; the
# default grid alone, 4 layers x 9 sparsities, is 17 minutes of it).
set -euo pipefail
cd "$(dirname "$0")/../../.."
python benchmarks/corpus.py
whisper-eas search data/corpus/dev-short.jsonl --model tiny.en --compute-type float32 --threads 2 \
  --layers 0,1,2,3 --sparsities 0.1,0.2,0.3,0.4,0.5,0.6,0.7,0.8,0.9 \
  --extra "-1:0 pad=4" --extra "-1:0 pad=8" --extra "-1:0 pad=16" --extra "-1:0 pad=32" --extra "-1:0 pad=64" \
  --extra "-1:0,0:0.3 pad=16" --extra "-1:0,1:0.3 pad=16" --extra "-1:0,1:0.5 pad=16" \
  --extra "-1:0.5 score=truncate" --extra "-1:0.5 score=stride" --extra "0:0.5 score=random" \
  --extra "0:0.5 score=keynorm" --extra "0:0.5 score=attention-offdiag" --extra "0:0.5 score=attention-maxhead" \
  --extra "0:0.5 drop" --extra "0:0 adaptive=0.9" --extra "1:0 adaptive=0.9" \
  --output-dir runs/search-tiny.en-cpu "$@"
