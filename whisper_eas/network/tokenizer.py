"""Whisper's tokenizer: the byte-level BPE of a model's `tokenizer.json` (via the `tokenizers`
library) plus Whisper's special tokens, whose ids follow from the vocabulary size alone."""

from __future__ import annotations

import string
from functools import cached_property
from typing import Dict, List, Optional, Sequence, Tuple

import tokenizers

from ..errors import OptionsError

# Whisper's language codes in token order (openai-whisper's LANGUAGES); large-v3 adds "yue".
LANGUAGES: Dict[str, str] = dict(
    en="english", zh="chinese", de="german", es="spanish", ru="russian", ko="korean", fr="french",
    ja="japanese", pt="portuguese", tr="turkish", pl="polish", ca="catalan", nl="dutch", ar="arabic",
    sv="swedish", it="italian", id="indonesian", hi="hindi", fi="finnish", vi="vietnamese",
    he="hebrew", uk="ukrainian", el="greek", ms="malay", cs="czech", ro="romanian", da="danish",
    hu="hungarian", ta="tamil", no="norwegian", th="thai", ur="urdu", hr="croatian", bg="bulgarian",
    lt="lithuanian", la="latin", mi="maori", ml="malayalam", cy="welsh", sk="slovak", te="telugu",
    fa="persian", lv="latvian", bn="bengali", sr="serbian", az="azerbaijani", sl="slovenian",
    kn="kannada", et="estonian", mk="macedonian", br="breton", eu="basque", is_="icelandic",
    hy="armenian", ne="nepali", mn="mongolian", bs="bosnian", kk="kazakh", sq="albanian",
    sw="swahili", gl="galician", mr="marathi", pa="punjabi", si="sinhala", km="khmer", sn="shona",
    yo="yoruba", so="somali", af="afrikaans", oc="occitan", ka="georgian", be="belarusian",
    tg="tajik", sd="sindhi", gu="gujarati", am="amharic", yi="yiddish", lo="lao", uz="uzbek",
    fo="faroese", ht="haitian creole", ps="pashto", tk="turkmen", nn="nynorsk", mt="maltese",
    sa="sanskrit", lb="luxembourgish", my="myanmar", bo="tibetan", tl="tagalog", mg="malagasy",
    as_="assamese", tt="tatar", haw="hawaiian", ln="lingala", ha="hausa", ba="bashkir",
    jw="javanese", su="sundanese", yue="cantonese",
)
LANGUAGES = {code.rstrip("_"): name for code, name in LANGUAGES.items()}  # is_/as_ dodge keywords
TO_LANGUAGE_CODE = {name: code for code, name in LANGUAGES.items()}
TO_LANGUAGE_CODE.update(burmese="my", valencian="ca", flemish="nl", haitian="ht", letzeburgesch="lb",
                        pushto="ps", panjabi="pa", moldavian="ro", moldovan="ro", sinhalese="si",
                        castilian="es", mandarin="zh")


def language_code(language: str) -> str:
    """'en', 'English' or 'english' -> 'en'; anything else raises OptionsError (a ValueError)."""
    key = language.strip().lower()
    if key in LANGUAGES:
        return key
    if key in TO_LANGUAGE_CODE:
        return TO_LANGUAGE_CODE[key]
    raise OptionsError(f"unknown language {language!r}")


class Tokenizer:
    """Text <-> token ids, and the special-token sequences that steer Whisper."""

    def __init__(self, bpe: tokenizers.Tokenizer, n_vocab: int, language: Optional[str] = None,
                 task: str = "transcribe"):
        self.bpe = bpe
        self.n_vocab = n_vocab
        self.multilingual = n_vocab >= 51865
        self.num_languages = n_vocab - 51765 - int(self.multilingual)
        eot = bpe.token_to_id("<|endoftext|>")
        if eot is None:
            raise ValueError("tokenizer.json has no <|endoftext|> token")
        # openai-whisper appends the specials right after the BPE ranks, in this order.
        self.eot = eot
        self.sot = eot + 1
        self.translate = self.sot + 1 + self.num_languages
        self.transcribe = self.translate + 1
        self.sot_lm = self.translate + 2
        self.sot_prev = self.translate + 3
        self.no_speech = self.translate + 4
        self.no_timestamps = self.translate + 5
        self.timestamp_begin = self.translate + 6
        if not 1 <= self.num_languages <= len(LANGUAGES) or self.timestamp_begin + 1501 != n_vocab:
            raise ValueError(f"tokenizer does not fit a Whisper vocabulary of {n_vocab} tokens")
        self.language_codes: List[str] = list(LANGUAGES)[: self.num_languages]
        if task not in ("transcribe", "translate"):
            raise OptionsError(f"task must be 'transcribe' or 'translate', got {task!r}")
        self.language = language_code(language) if language else None
        if not self.multilingual and (task == "translate" or (self.language or "en") != "en"):
            raise OptionsError("this model is English-only: it cannot translate or take another language")
        self.task = task

    def with_language(self, language: Optional[str], task: Optional[str] = None) -> "Tokenizer":
        return Tokenizer(self.bpe, self.n_vocab, language, task or self.task)

    def language_token(self, code: str) -> int:
        index = self.language_codes.index(code) if code in self.language_codes else -1
        if index < 0:
            raise OptionsError(f"language {code!r} is not supported by this model")
        return self.sot + 1 + index

    @cached_property
    def all_language_tokens(self) -> Tuple[int, ...]:
        return tuple(range(self.sot + 1, self.sot + 1 + self.num_languages))

    @property
    def sot_sequence(self) -> Tuple[int, ...]:
        if not self.multilingual:
            return (self.sot,)
        seq = [self.sot]
        if self.language is not None:
            seq.append(self.language_token(self.language))
        seq.append(self.translate if self.task == "translate" else self.transcribe)
        return tuple(seq)

    def encode(self, text: str) -> List[int]:
        return self.bpe.encode(text, add_special_tokens=False).ids

    def decode(self, tokens: Sequence[int]) -> str:
        """Text of the ordinary tokens; special and timestamp tokens are left out."""
        return self.bpe.decode([t for t in tokens if t < self.eot])

    def decode_with_timestamps(self, tokens: Sequence[int]) -> str:
        parts, run = [], []
        for t in tokens:
            if t >= self.timestamp_begin:
                parts.append(self.bpe.decode(run))
                run = []
                parts.append(f"<|{(t - self.timestamp_begin) * 0.02:.2f}|>")
            elif t < self.eot:
                run.append(t)
        parts.append(self.bpe.decode(run))
        return "".join(parts)

    @cached_property
    def non_speech_tokens(self) -> Tuple[int, ...]:
        """Tokens for speaker tags and sound annotations ('[MUSIC]', '♪'): suppressed so the model
        transcribes speech only (the same set openai-whisper and faster-whisper compute)."""
        symbols = list('"#()*+/:;<=>@[\\]^_`{|}~「」『』')
        symbols += "<< >> <<< >>> -- --- -( -[ (' (\" (( )) ((( ))) [[ ]] {{ }} ♪♪ ♪♪♪".split()
        miscellaneous = set("♩♪♫♬♭♮♯")  # multi-byte: their first token is safe to suppress
        result = {self.encode(" -")[0], self.encode(" '")[0]}
        for symbol in symbols + sorted(miscellaneous):
            for tokens in (self.encode(symbol), self.encode(" " + symbol)):
                if len(tokens) == 1 or symbol in miscellaneous:
                    result.add(tokens[0])
        return tuple(sorted(result))

    def suppress_tokens(self, extra: Sequence[int] = (-1,)) -> Tuple[int, ...]:
        """openai-whisper's rule: -1 stands for the non-speech set; control tokens always go."""
        tokens = {t for t in extra if t >= 0}
        if -1 in extra:
            tokens.update(self.non_speech_tokens)
        tokens.update((self.transcribe, self.translate, self.sot, self.sot_prev, self.sot_lm, self.no_speech))
        return tuple(sorted(tokens))

    def split_to_word_tokens(self, tokens: Sequence[int]) -> Tuple[List[str], List[List[int]]]:
        """Group ordinary tokens into words (for word timestamps)."""
        if self.language in {"zh", "ja", "th", "lo", "my", "yue"}:
            return self._split_by_unicode(tokens)
        words, word_tokens = [], []
        for subword, subtokens in zip(*self._split_by_unicode(tokens)):
            special = subtokens[0] >= self.eot
            with_space = subword.startswith(" ")
            punctuation = subword.strip() in string.punctuation  # "" counts, as in openai-whisper
            if special or with_space or punctuation or not words:
                words.append(subword)
                word_tokens.append(list(subtokens))
            else:
                words[-1] += subword
                word_tokens[-1].extend(subtokens)
        return words, word_tokens

    def _split_by_unicode(self, tokens: Sequence[int]) -> Tuple[List[str], List[List[int]]]:
        # A token may end inside a multi-byte character; cut only where the text is whole.
        words, word_tokens, current = [], [], []
        for token in tokens:
            current.append(token)
            decoded = self.decode(current)
            if "\ufffd" not in decoded:
                words.append(decoded)
                word_tokens.append(current)
                current = []
        return words, word_tokens
