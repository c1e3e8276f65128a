"""What an image is built from, reduced to one digest.

The digest covers the Containerfile, every file of the build context that a
COPY or ADD takes (minus what the context's ignore file leaves out, as the
build itself does), the files' executable bits, and whatever else the caller
adds (the base image's identity, the reference). Equal digests mean the build
would see the same inputs, so the saved archive of the earlier build can be
reused without running podman at all.
"""

from __future__ import annotations

import hashlib
import json
import re
import shlex
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

IGNORE_FILES = (".containerignore", ".dockerignore")
# Never inputs, whatever the ignore file says: they change on every test run.
ALWAYS_IGNORED = ("**/__pycache__", "**/*.pyc")


def _instructions(containerfile_text: str) -> list[str]:
    """Logical lines: continuations joined, comments and blank lines dropped."""
    lines: list[str] = []
    current = ""
    for raw in containerfile_text.splitlines():
        stripped = raw.strip()
        if stripped.startswith("#") or (not stripped and not current):
            continue
        if stripped.endswith("\\"):
            current += stripped[:-1] + " "
            continue
        lines.append(current + stripped)
        current = ""
    if current.strip():
        lines.append(current)
    return lines


def copy_sources(containerfile_text: str) -> list[str]:
    """Context paths (possibly globs) that COPY/ADD take; copies from stages are not context."""
    sources: list[str] = []
    for line in _instructions(containerfile_text):
        keyword, _, rest = line.partition(" ")
        if keyword.upper() not in ("COPY", "ADD"):
            continue
        rest = rest.strip()
        # The exec form is a JSON array; the shell form splits like a shell.
        words = [str(w) for w in json.loads(rest)] if rest.startswith("[") else shlex.split(rest)
        flags = [w for w in words if w.startswith("--")]
        paths = [w for w in words if not w.startswith("--")]
        if any(flag.startswith("--from=") for flag in flags):
            continue
        sources.extend(paths[:-1])  # the last one is the destination
    return sources


def _pattern_regex(pattern: str) -> re.Pattern[str]:
    """A .dockerignore pattern (Go filepath.Match plus ``**``) as a regular expression."""
    out = ""
    i = 0
    while i < len(pattern):
        char = pattern[i]
        if pattern.startswith("**/", i):
            out += "(?:.*/)?"
            i += 3
            continue
        if pattern.startswith("**", i):
            out += ".*"
            i += 2
            continue
        if char == "*":
            out += "[^/]*"
        elif char == "?":
            out += "[^/]"
        else:
            out += re.escape(char)
        i += 1
    return re.compile(rf"^{out}$")


@dataclass(frozen=True)
class IgnoreRules:
    """Exclusions in order; a ``!`` pattern re-includes; the last matching pattern wins."""

    rules: tuple[tuple[bool, re.Pattern[str]], ...]

    @classmethod
    def from_patterns(cls, patterns: Iterable[str]) -> IgnoreRules:
        rules: list[tuple[bool, re.Pattern[str]]] = []
        for raw in [*ALWAYS_IGNORED, *patterns]:
            pattern = raw.strip()
            if not pattern or pattern.startswith("#"):
                continue
            include = pattern.startswith("!")
            pattern = pattern.lstrip("!").strip().strip("/")
            pattern = re.sub(r"/+", "/", pattern).removeprefix("./")
            rules.append((include, _pattern_regex(pattern)))
        return cls(tuple(rules))

    @classmethod
    def for_context(cls, context: Path) -> IgnoreRules:
        for name in IGNORE_FILES:
            path = context / name
            if path.exists():
                return cls.from_patterns(path.read_text().splitlines())
        return cls.from_patterns([])

    def ignored(self, relative: str) -> bool:
        # A pattern naming a directory excludes everything below it.
        parts = relative.split("/")
        prefixes = ["/".join(parts[: n + 1]) for n in range(len(parts))]
        result = False
        for include, regex in self.rules:
            if any(regex.match(prefix) for prefix in prefixes):
                result = not include
        return result


def context_files(context: Path, sources: Iterable[str], rules: IgnoreRules) -> list[Path]:
    """The regular files of ``context`` that the sources name, ignored ones left out."""
    found: set[Path] = set()
    for source in sources:
        matches = sorted(context.glob(source)) if any(c in source for c in "*?[") else [
            context / source
        ]
        if not matches or not all(m.exists() for m in matches):
            raise FileNotFoundError(f"COPY source {source!r} is not in the context {context}")
        for match in matches:
            candidates = [match] if match.is_file() else sorted(match.rglob("*"))
            for path in candidates:
                if path.is_file() and not rules.ignored(path.relative_to(context).as_posix()):
                    found.add(path)
    return sorted(found)


def inputs_digest(containerfile: Path, context: Path, extra: Mapping[str, str]) -> str:
    """sha256 over the Containerfile, the context files it copies, and ``extra``."""
    text = containerfile.read_text()
    files = context_files(context, copy_sources(text), IgnoreRules.for_context(context))
    digest = hashlib.sha256()

    def add(label: str, value: bytes) -> None:
        # Length-prefixed, so no two different input sets hash the same bytes.
        digest.update(f"{label}\0{len(value)}\0".encode())
        digest.update(value)

    add("containerfile", text.encode())
    for key in sorted(extra):
        add(f"extra:{key}", extra[key].encode())
    for path in files:
        relative = path.relative_to(context).as_posix()
        mode = "x" if path.stat().st_mode & 0o111 else "-"
        add(f"file:{relative}:{mode}", path.read_bytes())
    return digest.hexdigest()
