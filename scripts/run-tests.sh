#!/usr/bin/env bash
# Installs everything the test suite needs on a fresh Debian machine, builds the dev speech
# corpus, and runs the tests. This is the README's test command; .ci/run calls it too.
set -euo pipefail
cd "$(dirname "$0")/.."

# Debian packages: ffmpeg and espeak-ng build the corpus; the asterisk prompts are real speech.
packages=(ffmpeg espeak-ng asterisk-core-sounds-en-g722 asterisk-core-sounds-en)
missing=()
for p in "${packages[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if ((${#missing[@]})); then
    sudo=""; [ "$(id -u)" -ne 0 ] && sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
fi

# torch first: the pinned CPU build. A bare `torch` requirement would pull a multi-GB CUDA build.
python3 -m pip install -q torch==2.13.0
python3 -m pip install -q -e '.[test,base,serve,ray]'

python3 benchmarks/corpus.py --synthetic
python3 -m pytest -q "$@"
