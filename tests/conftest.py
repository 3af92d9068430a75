"""Shared fixtures: the bundled tiny.en model (loaded once) and the sample clips."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
JFK = ROOT / "samples" / "jfk.flac"
CORPUS = ROOT / "data" / "corpus"
JFK_TEXT = "And so my fellow Americans ask not what your country can do for you ask what you can do for your country"

torch.set_num_threads(2)


@pytest.fixture(scope="session")
def tiny():
    from whisper_eas import WhisperModel

    return WhisperModel("tiny.en", eas=None)  # dense unless a test asks for EAS


@pytest.fixture(scope="session")
def jfk() -> Path:
    return JFK


@pytest.fixture(scope="session")
def corpus() -> Path:
    """The dev corpus built by benchmarks/corpus.py (CI builds it; locally tests skip without)."""
    if not (CORPUS / "dev-short.jsonl").is_file():
        pytest.skip("dev corpus not built: python benchmarks/corpus.py")
    return CORPUS
