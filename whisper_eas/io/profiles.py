"""Saved EAS search results ("profiles"): which configuration `--eas auto` runs for a model on a device.

A profile is a small JSON file. `whisper-eas search` writes one to its output folder, and nothing
else: a profile becomes the default only when it is installed (`whisper-eas profile install FILE`,
or `search --install`), which copies it into the user's profile directory. Installing is refused,
unless forced, for a search on fewer than `MIN_UTTERANCES` utterances or whose pick was not
significant, because a pick from a quick search may be lucky noise.

`--eas auto` looks a profile up for the loaded weights (by fingerprint), device type and compute
type: first among the installed ones (the newest first), then among those shipped with the
package; one searched with the same compute type wins over one searched with another. A profile
is validated when it is used: its fingerprint, its model name (a profile that names another known
model, e.g. large-v3 for tiny.en, is refused even if the fingerprint matches) and the encoder
blocks it prunes must fit the model. `--eas auto` runs only a profile that records the search
that made it (the WER measured with and without EAS, on how many utterances, within its budget):
a hand-made file runs only when named with `--profile`. `find_profile` skips a broken, unfitting
or unrecorded file with one warning naming it, never silently and never fatally.
"""

from __future__ import annotations

import json
import logging
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import List, Optional, Set, Tuple, Union

from ..errors import OptionsError, ProfileError
from ..network.eas import EASConfig, EASPolicy, parse_eas
from .loading import HUB_MODELS

FORMAT = "whisper-eas-profile/1"
SHIPPED_DIR = Path(__file__).resolve().parents[1] / "profiles"  # whisper_eas/profiles/*.json
MIN_UTTERANCES = 50  # an install from a smaller search needs --force ...
MIN_AUDIO_SECONDS = 600  # ... unless it ran on at least ten minutes of audio (long recordings)

log = logging.getLogger("whisper_eas")
_warned: Set[str] = set()  # profile files already warned about in this process: one warning each


def user_profile_dir() -> Path:
    base = os.environ.get("WHISPER_EAS_HOME") or os.path.join(
        os.environ.get("XDG_CONFIG_HOME") or os.path.expanduser("~/.config"), "whisper-eas")
    return Path(base) / "profiles"


@dataclass
class Profile:
    """What `--eas auto` runs for one model, device and compute type. `eas` is for windows that
    are mostly padding (short clips: the search on short utterances picks it), `eas_speech`, if
    any, for windows full of speech (the search on long recordings picks it); with both, each
    window runs the one that fits its content (network/eas.py, EASPolicy). `metrics` and
    `metrics_speech` are the two searches' results."""

    model: str
    fingerprint: str
    device: str  # "cpu" or "cuda"
    eas: Optional[EASConfig]
    dtype: str = "float32"
    metrics: dict = field(default_factory=dict)
    hardware: str = ""
    dataset: str = ""
    created: str = ""
    path: Optional[Path] = None
    eas_speech: Optional[EASConfig] = None
    metrics_speech: dict = field(default_factory=dict)
    dataset_speech: str = ""

    def to_json(self) -> dict:
        out = {"format": FORMAT, "model": self.model, "fingerprint": self.fingerprint, "device": self.device,
               "dtype": self.dtype, "eas": None if self.eas is None else self.eas.describe(), "metrics": self.metrics,
               "hardware": self.hardware, "dataset": self.dataset, "created": self.created}
        if self.eas_speech is not None:
            out.update(eas_speech=self.eas_speech.describe(), metrics_speech=self.metrics_speech,
                       dataset_speech=self.dataset_speech)
        return out

    @property
    def policy(self) -> Union[None, EASConfig, EASPolicy]:
        """What each window runs: `eas`, or with `eas_speech` the policy that picks between them."""
        if self.eas_speech is None:
            return self.eas
        return EASPolicy(self.eas, self.eas_speech)

    def save(self, path: Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_json(), indent=1) + "\n")
        self.path = path
        return path

    @property
    def runs(self) -> str:
        """What `--eas auto` runs with this profile: its EAS spec, or 'dense' (a search that kept
        dense); with a speech configuration, 'SHORT | SPEECH'."""
        def one(config):
            return "dense" if config is None or config.is_dense else config.describe()

        return one(self.eas) if self.eas_speech is None else f"{one(self.eas)} | {one(self.eas_speech)}"

    @property
    def target(self) -> str:
        """Which runs it is for: 'tiny.en on cpu float32'."""
        return f"{self.model} on {self.device} {self.dtype}"

    @property
    def installed(self) -> bool:
        return self.path is not None and Path(self.path).resolve().parent == user_profile_dir().resolve()

    def check(self, model: str, fingerprint: str, n_layers: Optional[int] = None) -> None:
        """Raise ProfileError unless this profile fits the loaded model: the same weights (a
        model by another name - a path, a converted copy with the same files - is compatible
        when its fingerprint is the same) and encoder blocks that exist."""
        if self.fingerprint != fingerprint:
            raise ProfileError(f"{self.path}: made for {self.model} (weights {self.fingerprint}), not for {model} "
                               f"(weights {fingerprint})")
        if _other_known_models(self.model, model):
            raise ProfileError(f"{self.path}: made for {self.model}, not for {model}")
        if n_layers is not None and self.policy is not None:
            try:
                self.policy.check_layers(n_layers)
            except OptionsError as e:
                raise ProfileError(f"{self.path}: {e}") from None

    def unrecorded(self) -> Optional[str]:
        """Why this profile does not record the search that made it (None: it does): `--eas auto`
        runs only a measured configuration, never a hand-made one. Each role it fills (short
        clips: `eas`, `metrics`; speech: `eas_speech`, `metrics_speech`) needs its own record."""
        roles = [(m, what) for c, m, what in ((self.eas, self.metrics, ""), (self.eas_speech, self.metrics_speech, "speech "))
                 if c is not None]
        for m, what in roles or [(self.metrics, "")]:
            m = m or {}
            missing = [k for k in ("wer", "dense_wer") if not _is_number(m.get(k))]
            utterances = m.get("utterances")
            if not (isinstance(utterances, int) and not isinstance(utterances, bool) and utterances > 0):
                missing.append("utterances")
            if missing:
                return f"it records no {what}search (its {what}metrics lack {', '.join(map(repr, missing))})"
            allowed = m.get("allowed")
            if _is_number(allowed) and m["wer"] - m["dense_wer"] > allowed + 1e-5:
                return (f"its {what}WER ({m['wer']:.2%}) is past what its search allowed (dense {m['dense_wer']:.2%} "
                        f"+ {allowed:.2%})")
        return None


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and value == value


def _other_known_models(a: str, b: str) -> bool:
    """True when both names are known models (faster-whisper size names or their hub ids;
    'large' and 'large-v3' are one) and differ. A path or another name says nothing: the
    fingerprint decides."""
    repos = set(HUB_MODELS.values())
    a, b = HUB_MODELS.get(a, a), HUB_MODELS.get(b, b)
    return a in repos and b in repos and a != b


def load_profile(path) -> Profile:
    """Read and parse a profile file; any problem is a one-line ProfileError naming it."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise ProfileError(f"{path}: no such profile file") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ProfileError(f"{path}: not a readable profile ({type(e).__name__})") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise ProfileError(f"{path}: not a whisper-eas profile (expected format {FORMAT!r})")
    try:
        eas = _one_config(data["eas"]) if data["eas"] is not None else None
        eas_speech = _one_config(data["eas_speech"]) if data.get("eas_speech") is not None else None
        if eas is None and eas_speech is None:
            raise ProfileError(f"{path}: the profile's EAS configuration is empty")
        metrics, metrics_speech = data.get("metrics", {}), data.get("metrics_speech", {})
        if not isinstance(metrics, dict) or not isinstance(metrics_speech, dict):
            raise ProfileError(f"{path}: the profile's metrics are not an object")
        return Profile(model=str(data["model"]), fingerprint=str(data["fingerprint"]), device=str(data["device"]),
                       eas=eas, dtype=str(data.get("dtype", "float32")), metrics=metrics,
                       hardware=data.get("hardware", ""), dataset=data.get("dataset", ""),
                       created=data.get("created", ""), path=path, eas_speech=eas_speech,
                       metrics_speech=metrics_speech, dataset_speech=data.get("dataset_speech", ""))
    except KeyError as e:
        raise ProfileError(f"{path}: profile lacks the field {e.args[0]!r}") from None
    except (OptionsError, TypeError, AttributeError) as e:
        raise ProfileError(f"{path}: the profile's EAS configuration does not parse ({e})") from None


def _one_config(text) -> EASConfig:
    config = parse_eas(text)
    if config is None or isinstance(config, EASPolicy):
        raise OptionsError("a profile holds one configuration per field (dense is '0:0')")
    return config


def slug(text: str) -> str:
    """A file-name-safe short form of a model name or path."""
    name = Path(text.rstrip("/")).name or text
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("_") or "model"


def profile_filename(model: str, device: str, dtype: str, fingerprint: str) -> str:
    kind = "cuda" if device.startswith("cuda") else "cpu"
    return f"{slug(model)}-{kind}-{dtype}-{fingerprint[:8]}.json"


def _warn_once(path: Path, reason: str) -> None:
    key = str(path)
    if key not in _warned:
        _warned.add(key)
        log.warning("%s: skipped: %s", path, reason)


def _candidates() -> List[Path]:
    user = user_profile_dir()
    installed = sorted(user.glob("*.json"), key=lambda p: p.stat().st_mtime, reverse=True) if user.is_dir() else []
    return installed + sorted(SHIPPED_DIR.glob("*.json"))


def all_profiles() -> List[Profile]:
    """Every profile `--eas auto` may run, installed ones first (newest first), then shipped ones;
    a file that does not load is skipped with one warning."""
    out = []
    for path in _candidates():
        try:
            out.append(load_profile(path))
        except ProfileError as e:
            _warn_once(path, str(e).removeprefix(f"{path}: "))
    return out


def find_profile(model: str, fingerprint: str, device: str, compute_type: Optional[str] = None,
                 n_layers: Optional[int] = None) -> Optional[Profile]:
    """The newest installed profile, else a shipped one, for these weights on this device type;
    one searched with the same compute type wins over one searched with another. A profile for
    these weights that does not fit the model (its name, `n_layers` encoder blocks) or records no
    search is skipped with one warning."""
    kind = "cuda" if str(device).startswith("cuda") else "cpu"
    matches = []
    for profile in all_profiles():
        if profile.fingerprint != fingerprint or profile.device != kind:
            continue  # another model's or device's: not a problem
        try:
            profile.check(model, fingerprint, n_layers)
        except ProfileError as e:
            _warn_once(profile.path, str(e).removeprefix(f"{profile.path}: "))
            continue
        if profile.unrecorded():
            _warn_once(profile.path, f"{profile.unrecorded()}; run it with --profile {profile.path} if you mean to")
            continue
        matches.append(profile)
    same_type = [p for p in matches if compute_type is None or p.dtype == compute_type
                 or (p.dtype == "int8" and compute_type.startswith("int8_"))]  # 'int8' as saved before it was resolved
    return (same_type or matches or [None])[0]


def locate_profile(name_or_path: str) -> Path:
    """A profile file by path, or by name (its file name without .json) among the installed,
    then the shipped ones."""
    path = Path(name_or_path)
    if path.is_file():
        return path
    stem = path.name[:-5] if path.name.endswith(".json") else path.name
    for folder in (user_profile_dir(), SHIPPED_DIR):
        if (folder / f"{stem}.json").is_file():
            return folder / f"{stem}.json"
    raise ProfileError(f"{name_or_path}: no such profile file, and no installed or shipped profile of that name "
                       "(see `whisper-eas profile list`)")


def install_profile(path, force: bool = False) -> Tuple[Profile, Optional[Profile]]:
    """Install a profile into the user's profile directory, so that `--eas auto` runs it for its
    model, device and compute type. Returns (the installed profile, the one `--eas auto` ran
    before, None: dense). A profile that fills one role only (a search on short clips: `eas`; on
    long recordings: `eas_speech`) keeps the other role of what ran before. Refused without
    `force` for a search on fewer than MIN_UTTERANCES utterances (and under MIN_AUDIO_SECONDS of
    audio) or without a significant result."""
    profile = load_profile(path)
    if profile.unrecorded():  # `--eas auto` would skip it: not even --force installs it
        raise ProfileError(f"{path}: not installed: {profile.unrecorded()}; `--eas auto` runs only a search's "
                           f"pick (run this one with --profile {path})")
    if not force:
        for metrics in (m for m in (profile.metrics, profile.metrics_speech) if m):
            n, seconds = metrics.get("utterances"), metrics.get("audio_seconds")
            small = not isinstance(n, int) or n < MIN_UTTERANCES
            if small and (not isinstance(seconds, (int, float)) or seconds < MIN_AUDIO_SECONDS):
                made = f"a search on {n} utterances" if isinstance(n, int) else "a search of unknown size"
                raise ProfileError(f"{path}: not installed: {made}, fewer than {MIN_UTTERANCES} (and under "
                                   f"{MIN_AUDIO_SECONDS // 60} minutes of audio); its pick may be noise (search on "
                                   "more, or install anyway with --force)")
            if metrics.get("significant") is not True:
                raise ProfileError(f"{path}: not installed: the pick's WER loss is not significantly within the "
                                   "budget (search on more utterances, or install anyway with --force)")
    before = find_profile(profile.model, profile.fingerprint, profile.device, profile.dtype)
    if before is not None and profile.eas is None:
        profile.eas, profile.metrics, profile.dataset = before.eas, before.metrics, before.dataset
    if before is not None and profile.eas_speech is None and before.eas_speech is not None:
        profile.eas_speech, profile.metrics_speech = before.eas_speech, before.metrics_speech
        profile.dataset_speech = before.dataset_speech
    target = user_profile_dir() / profile_filename(profile.model, profile.device, profile.dtype, profile.fingerprint)
    profile.save(target)  # the newest installed profile wins
    return load_profile(target), before


def remove_profile(name_or_path: str) -> Tuple[Profile, Optional[Profile]]:
    """Delete an installed profile. Returns (the removed profile, what `--eas auto` runs now for
    its model, device and compute type, None: dense). Shipped profiles cannot be removed."""
    path = locate_profile(name_or_path)
    profile = load_profile(path)
    if not profile.installed:
        raise ProfileError(f"{path}: not an installed profile (only those in {user_profile_dir()} can be removed)")
    path.unlink()
    return profile, find_profile(profile.model, profile.fingerprint, profile.device, profile.dtype)
