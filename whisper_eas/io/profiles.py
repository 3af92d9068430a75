"""Saved EAS search results ("profiles"): which configuration to run for a model on a device.

A profile is a small JSON file written by `whisper-eas search`. `--eas auto` looks one up for the
loaded model (by weight fingerprint) and device: first among the user's own searches, then among
those shipped with the package."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import List, Optional

from ..errors import ProfileError, UserError
from ..network.eas import EASConfig, parse_eas

FORMAT = "whisper-eas-profile/1"
SHIPPED_DIR = Path(__file__).resolve().parents[1] / "profiles"  # whisper_eas/profiles/*.json



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


def load_profile(path) -> Profile:
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
        return Profile(model=data["model"], fingerprint=data["fingerprint"], device=data["device"], eas=eas,
                       dtype=data.get("dtype", "float32"), metrics=data.get("metrics", {}),
                       hardware=data.get("hardware", ""), dataset=data.get("dataset", ""),
                       created=data.get("created", ""), path=path)
    except KeyError as e:
        raise ProfileError(f"{path}: profile lacks the field {e.args[0]!r}") from None


def _candidates() -> List[Path]:
    user = sorted(user_profile_dir().glob("*.json"), key=lambda p: p.stat().st_mtime, reverse=True) \
        if user_profile_dir().is_dir() else []
    return user + sorted(SHIPPED_DIR.glob("*.json"))


def find_profile(model: str, fingerprint: str, device: str, compute_type: Optional[str] = None,
                 n_layers: Optional[int] = None) -> Optional[Profile]:
    """The newest user profile, else a shipped one, for these weights on this device type;
    one searched with the same compute type wins over one searched with another."""
    kind = "cuda" if str(device).startswith("cuda") else "cpu"
    matches = []
    for path in _candidates():
        try:
            profile = load_profile(path)
        except UserError:
            continue  # a broken file in the cache must not stop transcription
        if profile.fingerprint == fingerprint and profile.device == kind:
            matches.append(profile)
    same_type = [p for p in matches if compute_type is None or p.dtype == compute_type]
    return (same_type or matches or [None])[0]
