"""Tests for whisper_eas.evaluation.metrics: normalization, WER/CER counts, bootstrap."""

import dataclasses
import math
import time

import pytest

from whisper_eas.evaluation.metrics import (
    BootstrapResult,
    ErrorCounts,
    char_errors,
    corpus_wer,
    normalize,
    paired_bootstrap,
    word_errors,
)


def words(text: str) -> str:
    """Normalized text with whitespace collapsed (normalize may leave edge spaces)."""
    return " ".join(normalize(text).split())


# --- English normalizer (expected outputs are openai-whisper's) -------------------------


@pytest.mark.parametrize(
    "text, expected",
    [
        ("twenty five", "25"),
        ("Twenty-five people", "25 people"),
        ("two thousand and twenty two", "2022"),
        ("one oh one", "101"),
        ("twenty-first century", "21st century"),
        ("1,000,000 people", "1000000 people"),
        ("It's 3.5 percent", "it is 3.5%"),
        ("one", "one"),
    ],
)
def test_numbers(text, expected):
    assert words(text) == expected


@pytest.mark.parametrize(
    "text, expected",
    [
        ("$20", "$20"),
        ("twenty dollars", "$20"),
        ("It costs $20.", "it costs $20"),
        ("ten thousand dollars and five cents", "$10000.05"),
    ],
)
def test_currency(text, expected):
    assert words(text) == expected


@pytest.mark.parametrize(
    "text, expected",
    [
        ("Mr. Smith", "mister smith"),
        ("Mrs. Jones and Dr. Who", "missus jones and doctor who"),
        ("I won't go", "i will not go"),
        ("We can't, they're not", "we can not they are not"),
        ("I'm gonna wanna", "i am going to want to"),
        ("he'd been there", "he had been there"),
        ("y'all", "you all"),
    ],
)
def test_contractions_and_titles(text, expected):
    assert words(text) == expected


def test_british_to_american_spelling():
    assert words("The colour of the harbour") == "the color of the harbor"
    assert words("organise the theatre") == "organize the theater"


def test_punctuation_hyphens_casing():
    assert words("Hello, World!  How's it going?") == "hello world how is it going"
    assert words("well-known state-of-the-art") == "well known state of the art"
    assert words("HELLO There") == words("hello there") == "hello there"
    assert words('"Quoted"; semi: colon.') == "quoted semi colon"


def test_fillers_and_bracketed_spans_removed():
    assert words("uh I think, um, hmm yes") == "i think yes"
    assert words("mm mhm mmm okay") == "okay"
    assert words("[NOISE] hello (laughs) there <unk>") == "hello there"


def test_diacritics_removed():
    assert words("Café naïve") == "cafe naive"


def test_whisper_normalizer_extras_are_not_applied():
    # whisper-normalizer adds these rewrites; openai-whisper does not have them
    assert words("kinda sorta dunno 'cause") == "kinda sorta dunno cause"


def test_basic_normalizer_for_other_languages():
    assert " ".join(normalize("Ça va, TRÈS bien!", "fr").split()) == "ça va très bien"
    assert normalize("Hallo (lacht) Welt [x]", language="de").split() == ["hallo", "welt"]
    # the English rules are not applied
    assert normalize("twenty five", "de").split() == ["twenty", "five"]
    assert normalize("twenty five", None).split() == ["twenty", "five"]
    assert words("twenty five") == " ".join(normalize("twenty five", "English").split()) == "25"


# --- word and character errors ------------------------------------------------------------


def test_identical():
    c = word_errors("the cat sat", "the cat sat")
    assert c == ErrorCounts(0, 0, 0, 3)
    assert c.errors == 0 and c.wer == 0.0


def test_substitution():
    assert word_errors("the cat sat", "the dog sat") == ErrorCounts(1, 0, 0, 3)


def test_deletion():
    assert word_errors("the cat sat down", "the sat down") == ErrorCounts(0, 1, 0, 4)
    assert word_errors("the cat sat down", "the sat down").wer == pytest.approx(0.25)


def test_insertion():
    assert word_errors("the cat sat", "the big cat sat") == ErrorCounts(0, 0, 1, 3)


def test_mixed_edits():
    # ref: a b c d e f ; hyp: a x c e f g -> b->x (S), d deleted (D), g inserted (I)
    c = word_errors("a b c d e f", "a x c e f g", normalize=False)
    assert (c.substitutions, c.deletions, c.insertions, c.ref_len) == (1, 1, 1, 6)
    assert c.wer == pytest.approx(3 / 6)


def test_wer_can_exceed_one():
    assert word_errors("hi", "oh my oh my").wer == pytest.approx(4.0)


def test_empty_hypothesis_is_all_deletions():
    c = word_errors("the cat sat", "")
    assert c == ErrorCounts(0, 3, 0, 3)
    assert c.wer == 1.0


def test_empty_reference():
    c = word_errors("", "hello there")
    assert c == ErrorCounts(0, 0, 2, 0)
    assert c.wer == math.inf
    assert word_errors("", "") == ErrorCounts(0, 0, 0, 0)
    assert word_errors("", "").wer == 0.0
    # a reference that normalizes to nothing behaves the same
    assert word_errors("uh, um", "") == ErrorCounts(0, 0, 0, 0)


def test_normalization_applied_before_scoring():
    assert word_errors("Twenty five colours.", "25 colors").errors == 0
    raw = word_errors("Twenty five colours.", "25 colors", normalize=False)
    assert raw.errors == 3 and raw.ref_len == 3


def test_language_selects_normalizer():
    assert word_errors("twenty five", "25", language="en").errors == 0
    assert word_errors("twenty five", "25", language="de").errors == 2


def test_cer():
    c = char_errors("hello world", "helo wrld")
    assert c == ErrorCounts(0, 2, 0, 11)
    assert c.wer == pytest.approx(2 / 11)
    assert char_errors("abc", "abd", normalize=False) == ErrorCounts(1, 0, 0, 3)
    assert char_errors("abc", "abcd", normalize=False) == ErrorCounts(0, 0, 1, 3)
    # whitespace runs count as one space; edges are ignored
    assert char_errors("a  b ", " a b", normalize=False) == ErrorCounts(0, 0, 0, 3)
    assert char_errors("", "ab", normalize=False) == ErrorCounts(0, 0, 2, 0)


# --- aggregation ------------------------------------------------------------------------------


def test_error_counts_add_and_sum():
    a, b = ErrorCounts(1, 2, 3, 10), ErrorCounts(4, 0, 1, 5)
    assert a + b == ErrorCounts(5, 2, 4, 15)
    assert sum([a, b]) == a + b
    assert sum([], ErrorCounts()) == ErrorCounts()
    with pytest.raises(TypeError):
        a + 1
    with pytest.raises(dataclasses.FrozenInstanceError):
        a.substitutions = 0


def test_corpus_wer_weights_by_reference_length():
    ten = "one two three four five six seven eight nine ten"
    long_good = word_errors(ten, ten, normalize=False)
    short_bad = word_errors("hello", "goodbye", normalize=False)
    counts = [long_good, short_bad]
    assert corpus_wer(counts) == pytest.approx(1 / 11)
    mean_of_rates = (long_good.wer + short_bad.wer) / 2
    assert mean_of_rates == pytest.approx(0.5)
    assert corpus_wer(counts) != pytest.approx(mean_of_rates)


def test_corpus_wer_edge_cases():
    assert corpus_wer([]) == 0.0
    assert corpus_wer([ErrorCounts(0, 0, 0, 0)]) == 0.0
    assert corpus_wer([ErrorCounts(0, 0, 2, 0)]) == math.inf
    # an empty reference's insertions count against the corpus total
    assert corpus_wer([ErrorCounts(0, 0, 2, 0), ErrorCounts(0, 0, 0, 4)]) == pytest.approx(0.5)


# --- paired bootstrap -------------------------------------------------------------------------


def _synthetic(n, err_a, err_b, ref_len=20):
    a = [ErrorCounts(err_a(i), 0, 0, ref_len) for i in range(n)]
    b = [ErrorCounts(err_b(i), 0, 0, ref_len) for i in range(n)]
    return a, b


def test_bootstrap_identical_systems():
    a, _ = _synthetic(200, lambda i: i % 5, lambda i: 0)
    res = paired_bootstrap(a, a, n_resamples=500)
    assert isinstance(res, BootstrapResult)
    delta, low, high = res
    assert delta == 0.0 and low <= 0.0 <= high


def test_bootstrap_clearly_worse_system():
    a, b = _synthetic(300, lambda i: i % 3, lambda i: i % 3 + 2)
    delta, low, high = paired_bootstrap(a, b, n_resamples=1000)
    assert delta == pytest.approx(2 / 20)
    # every utterance is exactly 2 words worse, so every resample gives the same delta
    assert low == pytest.approx(delta) and high == pytest.approx(delta)
    a, b = _synthetic(300, lambda i: i % 3, lambda i: i % 3 + (i % 2) * 2)
    delta, low, high = paired_bootstrap(a, b, n_resamples=1000)
    assert delta == pytest.approx(1 / 20)
    assert 0.0 < low < delta < high
    # and swapping the systems flips the sign
    d2, l2, h2 = paired_bootstrap(b, a, n_resamples=1000)
    assert d2 == pytest.approx(-delta) and l2 <= h2 < 0.0


def test_bootstrap_noise_interval_contains_zero():
    # B is better on half the utterances and worse on the other half
    a, b = _synthetic(100, lambda i: 2, lambda i: 1 if i % 2 else 3)
    delta, low, high = paired_bootstrap(a, b, n_resamples=1000)
    assert delta == 0.0 and low < 0.0 < high


def test_bootstrap_deterministic_with_seed():
    a, b = _synthetic(150, lambda i: (i * 7) % 5, lambda i: (i * 3) % 4)
    r1 = paired_bootstrap(a, b, seed=3, n_resamples=300)
    r2 = paired_bootstrap(a, b, seed=3, n_resamples=300)
    r3 = paired_bootstrap(a, b, seed=4, n_resamples=300)
    assert r1 == r2
    assert r1.delta == r3.delta and (r1.low, r1.high) != (r3.low, r3.high)


def test_bootstrap_confidence_widens_interval():
    a, b = _synthetic(150, lambda i: (i * 7) % 5, lambda i: (i * 3) % 4)
    narrow = paired_bootstrap(a, b, confidence=0.5, n_resamples=500)
    wide = paired_bootstrap(a, b, confidence=0.99, n_resamples=500)
    assert wide.low <= narrow.low <= narrow.high <= wide.high


def test_bootstrap_is_fast():
    a, b = _synthetic(1000, lambda i: i % 4, lambda i: i % 5)
    t0 = time.perf_counter()
    paired_bootstrap(a, b, n_resamples=2000)
    assert time.perf_counter() - t0 < 5.0  # about 0.1 s; generous for a loaded machine


def test_bootstrap_input_errors():
    a, b = _synthetic(10, lambda i: 1, lambda i: 1)
    with pytest.raises(ValueError, match="utterances"):
        paired_bootstrap(a, b[:5])
    with pytest.raises(ValueError, match="no utterances"):
        paired_bootstrap([], [])
    with pytest.raises(ValueError, match="reference lengths differ at utterance 0"):
        paired_bootstrap([ErrorCounts(0, 0, 0, 3)], [ErrorCounts(0, 0, 0, 4)])
    with pytest.raises(ValueError, match="confidence"):
        paired_bootstrap(a, b, confidence=1.0)
    with pytest.raises(ValueError, match="no words"):
        paired_bootstrap([ErrorCounts(0, 0, 1, 0)], [ErrorCounts(0, 0, 0, 0)])


def test_bootstrap_with_some_empty_references():
    a = [ErrorCounts(0, 0, 1, 0)] + [ErrorCounts(1, 0, 0, 5)] * 20
    b = [ErrorCounts(0, 0, 0, 0)] + [ErrorCounts(0, 0, 0, 5)] * 20
    delta, low, high = paired_bootstrap(a, b, n_resamples=200)
    assert delta == pytest.approx(-21 / 100)
    assert math.isfinite(low) and math.isfinite(high) and low <= high < 0


def test_longest_repeat_finds_loops_not_ordinary_speech():
    from whisper_eas.evaluation.metrics import longest_repeat

    assert longest_repeat("") == 1
    assert longest_repeat("ask not what your country can do for you, ask what you can do") == 1
    assert longest_repeat("Delta Delta Delta Delta.") == 4
    assert longest_repeat("Un Un Un Un Un Un") == 6
    assert longest_repeat("press one, press one, press one to continue") == 3  # a two-word phrase
    assert longest_repeat("that that is, is") == 2
