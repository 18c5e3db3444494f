#!/usr/bin/env python3
"""The files of the function app package: the project tree minus the rules in .funcignore (gitignore syntax).

    python3 scripts/package_files.py                 # list the files, one per line
    python3 scripts/package_files.py --copy-to DIR   # copy them into DIR

azd applies .funcignore itself when it packages the Functions service; scripts/build_package.py --zip (run by
scripts/deploy.sh) zips this list, so both ship the same files (tests/infra/test_packaging.py compares this list
with git's reading of the rules).
Supported syntax: comments, blank lines, ``!`` negation, leading ``/`` anchoring, trailing ``/`` (directories
only), ``*``, ``?``, ``[...]`` and ``**``. As in git, a file inside an excluded directory can't be re-included.
"""

from __future__ import annotations

import argparse
import re
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _translate(glob: str) -> str:
    out, i = "", 0
    while i < len(glob):
        if glob.startswith("**/", i):
            out += "(?:.*/)?"
            i += 3
        elif glob.startswith("/**", i) and i + 3 == len(glob):
            out += "/.*"
            i += 3
        elif glob.startswith("**", i):
            out += ".*"
            i += 2
        elif glob[i] == "*":
            out += "[^/]*"
            i += 1
        elif glob[i] == "?":
            out += "[^/]"
            i += 1
        elif glob[i] == "[":
            end = glob.find("]", i + 1)
            if end == -1:
                out += re.escape(glob[i])
                i += 1
            else:
                body = glob[i + 1 : end]
                out += "[" + ("^" + body[1:] if body.startswith("!") else body) + "]"
                i = end + 1
        else:
            out += re.escape(glob[i])
            i += 1
    return out


class Rule:
    def __init__(self, line: str) -> None:
        self.negate = line.startswith("!")
        pattern = line[1:] if self.negate else line
        self.dir_only = pattern.endswith("/")
        pattern = pattern.rstrip("/")
        anchored = pattern.startswith("/") or "/" in pattern
        pattern = pattern.lstrip("/")
        prefix = "" if anchored else "(?:.*/)?"
        self.regex = re.compile("^" + prefix + _translate(pattern) + "$")

    def matches(self, relative: str, is_dir: bool) -> bool:
        return (is_dir or not self.dir_only) and bool(self.regex.match(relative))


def load_rules(ignore_file: Path) -> list[Rule]:
    rules = []
    for raw in ignore_file.read_text(encoding="utf-8").splitlines():
        line = raw.rstrip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("\\"):
            line = line[1:]
        rules.append(Rule(line))
    return rules


def ignored(rules: list[Rule], relative: str, is_dir: bool) -> bool:
    result = False
    for rule in rules:
        if rule.matches(relative, is_dir):
            result = not rule.negate
    return result


def package_files(root: Path = ROOT, ignore_file: Path | None = None) -> list[str]:
    rules = load_rules(ignore_file or root / ".funcignore")
    files: list[str] = []

    def walk(directory: Path) -> None:
        for entry in sorted(directory.iterdir()):
            relative = entry.relative_to(root).as_posix()
            if entry.is_symlink():
                continue
            if entry.is_dir():
                if not ignored(rules, relative, True):
                    walk(entry)
            elif not ignored(rules, relative, False):
                files.append(relative)

    walk(root)
    return files


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--copy-to", type=Path, help="copy the package files into this directory")
    parser.add_argument("--root", type=Path, default=ROOT, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    files = package_files(args.root.resolve())
    if args.copy_to:
        for relative in files:
            target = args.copy_to / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(args.root / relative, target)
        print(f"copied {len(files)} files to {args.copy_to}")
    else:
        print("\n".join(files))
    return 0


if __name__ == "__main__":
    sys.exit(main())
