"""The cache of converted weights (io/model_cache.py): a cached load is the same model, a damaged
cache file is ignored and rewritten, and WHISPER_EAS_CACHE=off writes nothing."""

from __future__ import annotations

import pytest
import torch

from whisper_eas.io import model_cache
from whisper_eas.io.loading import load_model


def _same(a, b):
    sa, sb = a.model.state_dict(), b.model.state_dict()
    assert sa.keys() == sb.keys()
    for k in sa:
        assert sa[k].dtype == sb[k].dtype, k
        assert torch.equal(sa[k], sb[k]), k
    assert a.model.alignment_heads == b.model.alignment_heads
    assert a.suppress_tokens == b.suppress_tokens


@pytest.mark.parametrize("compute_type", ["float32", "int8_float32"])
def test_a_cached_load_gives_the_same_model_as_converting_the_checkpoint(compute_type, tmp_path, monkeypatch, jfk):
    monkeypatch.setenv("WHISPER_EAS_CACHE", str(tmp_path))
    first = load_model("tiny.en", compute_type=compute_type)
    files = list(tmp_path.glob(f"*-{compute_type}.safetensors"))
    assert len(files) == 1
    assert model_cache.load(files[0].name.rsplit("-", 1)[0], compute_type, "cpu") is not None
    second = load_model("tiny.en", compute_type=compute_type)
    _same(first, second)
    assert second.model.compute_type == compute_type
    from whisper_eas import WhisperModel

    texts = [" ".join(s.text for s in WhisperModel("tiny.en", eas=None, loaded=m).transcribe(str(jfk))[0]) for m in (first, second)]
    assert texts[0] == texts[1]


def test_a_damaged_cache_file_is_ignored_and_written_anew(tmp_path, monkeypatch):
    monkeypatch.setenv("WHISPER_EAS_CACHE", str(tmp_path))
    reference = load_model("tiny.en", compute_type="float32")
    (path,) = tmp_path.glob("*.safetensors")
    path.write_bytes(path.read_bytes()[:1000])
    again = load_model("tiny.en", compute_type="float32")
    _same(reference, again)
    assert model_cache.load(path.name.rsplit("-", 1)[0], "float32", "cpu") is not None


def test_the_cache_can_be_turned_off(tmp_path, monkeypatch):
    monkeypatch.setenv("WHISPER_EAS_CACHE", "off")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    load_model("tiny.en", compute_type="float32")
    assert model_cache.cache_dir() is None
    assert not any(tmp_path.rglob("*.safetensors"))
