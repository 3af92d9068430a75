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
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import List, Optional, Set, Tuple

from ..errors import OptionsError, ProfileError
from ..network.eas import EASConfig, parse_eas
from .loading import HUB_MODELS

FORMAT = "whisper-eas-profile/1"
SHIPPED_DIR = Path(__file__).resolve().parents[1] / "profiles"  # whisper_eas/profiles/*.json
MIN_UTTERANCES = 50  # an install from a smaller search needs --force

log = logging.getLogger("whisper_eas")
_warned: Set[str] = set()  # profile files already warned about in this process: one warning each


def user_profile_dir() -> Path:
    base = os.environ.get("WHISPER_EAS_HOME") or os.path.join(
        os.environ.get("XDG_CONFIG_HOME") or os.path.expanduser("~/.config"), "whisper-eas")
    return Path(base) / "profiles"


@dataclass
class Profile:
    model: str
    fingerprint: str
    device: str  # "cpu" or "cuda"
    eas: EASConfig
    dtype: str = "float32"
    metrics: dict = field(default_factory=dict)
    hardware: str = ""
    dataset: str = ""
    created: str = ""
    path: Optional[Path] = None

    def to_json(self) -> dict:
        return {"format": FORMAT, "model": self.model, "fingerprint": self.fingerprint, "device": self.device,
                "dtype": self.dtype, "eas": self.eas.describe(), "metrics": self.metrics,
                "hardware": self.hardware, "dataset": self.dataset, "created": self.created}

    def save(self, path: Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_json(), indent=1) + "\n")
        self.path = path
        return path

    @property
    def runs(self) -> str:
        """What `--eas auto` runs with this profile: its EAS spec, or 'dense' (a search that kept dense)."""
        return "dense" if self.eas.is_dense else self.eas.describe()

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
        if n_layers is not None:
            try:
                self.eas.check_layers(n_layers)
            except OptionsError as e:
                raise ProfileError(f"{self.path}: {e}") from None

    def unrecorded(self) -> Optional[str]:
        """Why this profile does not record the search that made it (None: it does): `--eas auto`
        runs only a measured configuration, never a hand-made one."""
        m = self.metrics
        missing = [k for k in ("wer", "dense_wer") if not _is_number(m.get(k))]
        utterances = m.get("utterances")
        if not (isinstance(utterances, int) and not isinstance(utterances, bool) and utterances > 0):
            missing.append("utterances")
        if missing:
            return f"it records no search (its metrics lack {', '.join(map(repr, missing))})"
        allowed = m.get("allowed")
        if _is_number(allowed) and m["wer"] - m["dense_wer"] > allowed + 1e-5:
            return (f"its WER ({m['wer']:.2%}) is past what its search allowed (dense {m['dense_wer']:.2%} "
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
        eas = parse_eas(data["eas"])
        if eas is None:
            raise ProfileError(f"{path}: the profile's EAS configuration is empty")
        metrics = data.get("metrics", {})
        if not isinstance(metrics, dict):
            raise ProfileError(f"{path}: the profile's metrics are not an object")
        return Profile(model=str(data["model"]), fingerprint=str(data["fingerprint"]), device=str(data["device"]),
                       eas=eas, dtype=str(data.get("dtype", "float32")), metrics=metrics,
                       hardware=data.get("hardware", ""), dataset=data.get("dataset", ""),
                       created=data.get("created", ""), path=path)
    except KeyError as e:
        raise ProfileError(f"{path}: profile lacks the field {e.args[0]!r}") from None
    except (OptionsError, TypeError, AttributeError) as e:
        raise ProfileError(f"{path}: the profile's EAS configuration does not parse ({e})") from None


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
    same_type = [p for p in matches if compute_type is None or p.dtype == compute_type]
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
    """Copy a profile into the user's profile directory, so that `--eas auto` runs it for its
    model, device and compute type. Returns (the installed profile, the one `--eas auto` ran
    before, None: dense). Refused without `force` for a search on fewer than MIN_UTTERANCES
    utterances or without a significant result."""
    profile = load_profile(path)
    if profile.unrecorded():  # `--eas auto` would skip it: not even --force installs it
        raise ProfileError(f"{path}: not installed: {profile.unrecorded()}; `--eas auto` runs only a search's "
                           f"pick (run this one with --profile {path})")
    if not force:
        n = profile.metrics.get("utterances")
        if not isinstance(n, int) or n < MIN_UTTERANCES:
            made = f"a search on {n} utterances" if isinstance(n, int) else "a search of unknown size"
            raise ProfileError(f"{path}: not installed: {made}, fewer than {MIN_UTTERANCES}; its pick may be noise "
                               f"(search on more utterances, or install anyway with --force)")
        if profile.metrics.get("significant") is not True:
            raise ProfileError(f"{path}: not installed: the pick's WER loss is not significantly within the budget "
                               f"(search on more utterances, or install anyway with --force)")
    before = find_profile(profile.model, profile.fingerprint, profile.device, profile.dtype)
    target = user_profile_dir() / profile_filename(profile.model, profile.device, profile.dtype, profile.fingerprint)
    target.parent.mkdir(parents=True, exist_ok=True)
    if Path(path).resolve() != target.resolve():
        shutil.copyfile(path, target)
    os.utime(target)  # the newest installed profile wins
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
