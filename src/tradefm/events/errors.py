"""Bad input: every error names the file, the line or record, the field and the value."""

from __future__ import annotations

from dataclasses import dataclass, field


class BadInputError(ValueError):
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
