"""A stand-in psql for the drill's unit tests: it records each call and answers as told."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass
class Call:
    argv: list[str]
    database: str
    user: str
    stdin: str


class StandInPsql:
    """A psql that records each call (arguments, database, user, input), prints
    ANSWER on stdout and ERR on stderr, and exits STATUS (all three from its
    environment)."""

    def __init__(self, tmp_path: Path) -> None:
        self.calls_dir = tmp_path / "calls"
        self.calls_dir.mkdir()
        self.path = tmp_path / "psql"
        self.path.write_text(
            "#!/bin/sh\n"
            f'd="{self.calls_dir}"; n=$(ls "$d" | wc -l)\n'
            'mkdir "$d/$n"\n'
            "printf '%s\\n' \"$@\" > \"$d/$n/argv\"\n"
            "printf '%s\\n%s\\n' \"${PGDATABASE:-}\" \"${PGUSER:-}\" > \"$d/$n/env\"\n"
            'cat > "$d/$n/stdin"\n'
            "printf '%s' \"${ANSWER:-}\"\n"
            "printf '%s' \"${ERR:-}\" >&2\n"
            'exit "${STATUS:-0}"\n')
        self.path.chmod(0o755)

    def calls(self) -> list[Call]:
        found = []
        for n in range(len(list(self.calls_dir.iterdir()))):
            call = self.calls_dir / str(n)
            database, user = (call / "env").read_text().splitlines()
            found.append(Call((call / "argv").read_text().splitlines(), database, user,
                              (call / "stdin").read_text()))
        return found
