"""Bad input: every error names the file (or the setting), what is wrong with it and why.

:class:`InputError` is input a command cannot use (a file that is not what it should be, a setting out of
range); :class:`BadInputError` is its record-level kind, naming the line or record, the field and the value.
The command line prints either as one line; anything else that escapes a command is a bug, not bad input.
Both are ``ValueError`` so that code catching those keeps working."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


class InputError(ValueError):
    """Input a command cannot use; the message names it, what is wrong and why (one line)."""


class BadInputError(InputError):
    """A record that cannot become a canonical event."""

    def __init__(self, path: str, where: str, field_name: str, value: object, reason: str) -> None:
        self.path, self.where, self.field, self.value, self.reason = str(path), where, field_name, value, reason
        super().__init__(f"{path}: {where}: field '{field_name}' = {value!r}: {reason}")


@dataclass
class BadRows:
    """Bad rows counted instead of raised (``--skip-bad``): never silent, always reported."""

    path: str
    count: int = 0
    examples: list[str] = field(default_factory=list)
    by_reason: dict[str, int] = field(default_factory=dict)

    def add(self, err: BadInputError) -> None:
        self.count += 1
        self.by_reason[err.reason] = self.by_reason.get(err.reason, 0) + 1
        if len(self.examples) < 5:
            self.examples.append(str(err))


class Problems:
    """Either raises the first bad row, or (``skip_bad``) counts it and lets the reader drop it."""

    def __init__(self, path: str, skip_bad: bool) -> None:
        self.skip_bad = skip_bad
        self.bad = BadRows(str(path))

    def report(self, err: BadInputError) -> None:
        if not self.skip_bad:
            raise err
        self.bad.add(err)


def read_json(path: str | Path, what: str) -> Any:
    """The content of a JSON file, or an :class:`InputError` saying the file is not ``what`` (and why)."""
    path = Path(path)
    try:
        return json.loads(path.read_text())
    except UnicodeDecodeError:
        raise InputError(f"{path}: not {what} (not a text file)") from None
    except json.JSONDecodeError as e:
        raise InputError(f"{path}: not {what} (not JSON: {e.msg} at line {e.lineno})") from None
