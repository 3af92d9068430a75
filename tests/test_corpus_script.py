"""Unit tests for the transcript parsing in benchmarks/corpus.py (no network, no audio)."""

import importlib.util
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parent.parent / "benchmarks" / "corpus.py"


@pytest.fixture(scope="module")
def corpus():
    spec = importlib.util.spec_from_file_location("benchmarks_corpus", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look the module up while the class is built
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        sys.modules.pop(spec.name, None)


ASTERISK_SAMPLE = """\
; Core Asterisk Sounds in English

activated: Activated.
beep: [this is a simple beep tone]
confbridge-join: <beep ascending>
digits/5: five
letters/at: at [@]
letters/space: space [ ]
silence/1: (1 second of silence)
spy-iax2: IAX (note: does not say "2")
vm-intro: Please leave your message after the tone.  When done hang up or press the pound key. (simple tone sound plays)
vm-leavemsg:  Press 5 to leave a message
dir-multi2: ... for ...
empty:
not a prompt line
"""


def test_parse_asterisk_name_text(corpus):
    prompts = corpus.parse_asterisk_transcripts(ASTERISK_SAMPLE)
    assert prompts["activated"] == "Activated."
    assert prompts["digits/5"] == "five"  # subfolder names are kept
    assert prompts["spy-iax2"] == 'IAX (note: does not say "2")'  # split on the first colon only
    assert prompts["vm-leavemsg"] == "Press 5 to leave a message"
    assert prompts["empty"] == ""
    assert not any(name.startswith(";") for name in prompts)  # comment line
    assert "not a prompt line" not in prompts
    assert len(prompts) == 12


def test_parse_asterisk_keeps_first_duplicate(corpus):
    assert corpus.parse_asterisk_transcripts("a: one\na: two\n") == {"a": "one"}


@pytest.mark.parametrize("raw, expected", [
    ("Activated.", "Activated."),
    ("[this is a simple beep tone]", None),
    ("<beep ascending>", None),
    ("(10 seconds of silence)", None),
    ("", None),
    ("   ", None),
    ("at [@]", "at"),
    ("space [ ]", "space"),
    ('IAX (note: does not say "2")', "IAX"),
    ("press the pound key. (simple tone sound plays)", "press the pound key."),
    ("Welcome.  Please  enter", "Welcome. Please enter"),
    ("... for ...", "... for ..."),  # ellipses are kept verbatim
    ("Press 1 for", "Press 1 for"),  # digits are kept verbatim
    ("press * to toggle pause, press # to enter", "press star to toggle pause, press pound to enter"),
    ("followed by # or just # to exit", "followed by pound or just pound to exit"),
    ("exclaimation-point [!]", "exclamation point"),
    ("mute or umute all users", "mute or unmute all users"),
    ("*", None),  # a lone symbol is no speech; it is not turned into "star"
])
def test_clean_asterisk_text(corpus, raw, expected):
    assert corpus.clean_asterisk_text(raw) == expected


def test_select_asterisk_prompts_needs_audio_and_speech(corpus):
    transcripts = corpus.parse_asterisk_transcripts(ASTERISK_SAMPLE)
    audio = ["activated", "beep", "digits/5", "letters/at", "silence/1", "orphan-audio"]
    pairs = corpus.select_asterisk_prompts(transcripts, audio)
    # beep and silence/1 are non-speech; the other transcripts have no audio.
    assert pairs == [("activated", "Activated."), ("digits/5", "five"), ("letters/at", "at")]


def test_select_asterisk_prompts_sorts_by_code_point(corpus):
    transcripts = {"digits/2": "two", "digits/10": "ten", "vm-advopts": "x", "vm-Cust1": "y"}
    pairs = corpus.select_asterisk_prompts(transcripts, transcripts)
    assert [name for name, _ in pairs] == ["digits/10", "digits/2", "vm-Cust1", "vm-advopts"]


def test_split_even_odd(corpus):
    even, odd = corpus.split_even_odd(["a", "b", "c", "d", "e"])
    assert even == ["a", "c", "e"]
    assert odd == ["b", "d"]
    assert corpus.split_even_odd([]) == ([], [])


def test_split_is_decided_after_filtering(corpus):
    # A skipped non-speech prompt must not shift a gap into the split.
    transcripts = {"a": "A.", "b": "[beep]", "c": "C.", "d": "D."}
    pairs = corpus.select_asterisk_prompts(transcripts, transcripts)
    even, odd = corpus.split_even_odd(pairs)
    assert [n for n, _ in even] == ["a", "d"]
    assert [n for n, _ in odd] == ["c"]


def test_parse_sphinx_transcription(corpus):
    content = (
        "<s> ten of clubs  </s> (001)\n"
        "<s> eight of spades four of clubs seven of hearts  </s> (005)\n"
        "\n"
        "no tags here (utt-3)\n"
    )
    assert corpus.parse_sphinx_transcription(content) == {
        "001": "ten of clubs",
        "005": "eight of spades four of clubs seven of hearts",
        "utt-3": "no tags here",
    }


def test_parse_sphinx_transcription_rejects_malformed(corpus):
    with pytest.raises(ValueError):
        corpus.parse_sphinx_transcription("<s> no file id </s>\n")


def test_join_plain_lines(corpus):
    assert corpus.join_plain_lines("1\nFrom fairest creatures,\n\nThat thereby\n") == \
        "1 From fairest creatures, That thereby"


def _item(corpus, item_id, source):
    return corpus.Item(id=item_id, source=source, text="", audio=f"{item_id}.flac",
                       make=lambda dest: None)


def test_select_short_represents_every_source(corpus):
    items = [_item(corpus, f"asterisk/{i:03d}", "asterisk") for i in range(276)]
    items += [_item(corpus, f"librivox/{i}", "librivox") for i in range(5)]
    items += [_item(corpus, f"cards/{i}", "cards") for i in range(5)]
    items.append(_item(corpus, "jfk/jfk", "jfk"))
    short = corpus.select_short(items, 80)
    assert len(short) == 80
    assert {item.source for item in short} == {"asterisk", "librivox", "cards", "jfk"}
    assert [item.id for item in short] == sorted(item.id for item in short)
    assert short == corpus.select_short(list(reversed(items)), 80)  # order-independent
    assert len(corpus.select_short(items, 3)) == 3  # fewer slots than sources: size wins
    assert corpus.select_short(items[:10], 80) == sorted(items[:10], key=lambda i: i.id)


def test_long_recordings_use_every_utterance_once_in_a_seeded_order(corpus):
    items = [corpus.Item(id=f"u{i:03d}", source="s", text=f"t{i}", audio=f"a/{i}.flac", make=None,
                         duration=2.0 + (i % 5)) for i in range(200)]
    plans = corpus.plan_recordings(items, 180.0, seed=7)
    assert plans == corpus.plan_recordings(list(reversed(items)), 180.0, seed=7)  # pure, order-free
    used = [item.id for plan in plans for item, _ in plan]
    assert sorted(used) == sorted(item.id for item in items)  # each utterance once
    lengths = [sum(item.duration + gap for item, gap in plan) for plan in plans]
    assert all(120 < n < 240 for n in lengths)  # about the target, minutes each
    assert all(0.1 <= gap <= 5.0 for plan in plans for _, gap in plan)  # natural pauses
