"""`whisper-eas profile list | show | install | remove`: which EAS configuration `--eas auto` runs.

A search writes a profile.json and leaves the default alone; `install` is the explicit, announced
step that makes a profile the default for its model, device and compute type."""

from __future__ import annotations

import json
import sys
from typing import Optional

from ..io.profiles import (MIN_UTTERANCES, Profile, all_profiles, find_profile, install_profile, load_profile,
                           locate_profile, remove_profile, user_profile_dir)
from . import flags


def add_parser(sub) -> None:
    p = sub.add_parser("profile", help="list, show, install or remove the EAS profiles `--eas auto` runs",
                       description="EAS profiles say which configuration `--eas auto` (the default) runs for a "
                                   f"model, device and compute type. Installed profiles ({user_profile_dir()}) "
                                   "win over the ones shipped with the package.")
    actions = p.add_subparsers(dest="action", metavar="ACTION")

    def action(name, handler, **kwargs):
        a = actions.add_parser(name, **kwargs)
        a.set_defaults(handler=handler)
        return a

    action("list", run_list, help="every profile; * marks what `--eas auto` runs")
    action("show", run_show, help="one profile's contents").add_argument("profile", metavar="NAME_OR_PATH")
    a = action("install", run_install, help="make a search's profile what `--eas auto` runs",
               description="Copy a profile (a search's profile.json) into the installed profiles, so that "
                           "`--eas auto` runs it for its model, device and compute type. Refused for a search on "
                           f"fewer than {MIN_UTTERANCES} utterances or without a significant result, unless --force.")
    a.add_argument("file", metavar="FILE")
    a.add_argument("--force", action="store_true", help="install even a small or not significant search's pick")
    action("remove", run_remove, help="uninstall a profile (shipped ones stay)").add_argument("name", metavar="NAME")
    for a in actions.choices.values():
        flags.add_output_flags(a, None)
    p.set_defaults(handler=lambda args: _usage(p))


def _usage(parser) -> int:
    parser.print_help(sys.stderr)
    return 2


def _before(profile: Optional[Profile]) -> str:
    return "dense, no profile" if profile is None else f"{profile.runs} from {profile.path}"


def install(path, force: bool) -> None:
    """Install and say so in one line: what `--eas auto` runs now, for what, and what it ran before."""
    installed, before = install_profile(path, force=force)
    print(f"installed {installed.path}: `--eas auto` now runs {installed.runs} for {installed.target} "
          f"(before: {_before(before)})")


def run_install(args) -> int:
    install(args.file, args.force)
    return 0


def run_remove(args) -> int:
    removed, now = remove_profile(args.name)
    print(f"removed {removed.path}: `--eas auto` now runs {now.runs if now else 'dense'} for {removed.target}"
          + (f" (from {now.path})" if now else ""))
    return 0


def run_show(args) -> int:
    profile = load_profile(locate_profile(args.profile))
    print(json.dumps({"path": str(profile.path), "installed": profile.installed, **profile.to_json()}, indent=1))
    return 0


def run_list(args) -> int:
    profiles = all_profiles()
    active = {str(p.path) for p in profiles
              if (chosen := find_profile(p.model, p.fingerprint, p.device, p.dtype)) is not None
              and str(chosen.path) == str(p.path)}
    rows = [("", "NAME", "MODEL", "DEVICE", "TYPE", "EAS", "UTTERANCES", "SIGNIFICANT", "WHERE")]
    for p in profiles:
        rows.append(("*" if str(p.path) in active else "", p.path.stem, p.model, p.device, p.dtype, p.runs,
                     str(p.metrics.get("utterances", "?")), {True: "yes", False: "no"}.get(p.metrics.get("significant"), "?"),
                     "installed" if p.installed else "shipped"))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip())
    print(f"(* = what `--eas auto` runs for that model, device and compute type; installed profiles live in "
          f"{user_profile_dir()})")
    return 0
