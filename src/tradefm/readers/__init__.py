"""Readers: raw venue files in, canonical :class:`~tradefm.events.EventDay` tables out.

Every reader module has ``detect(path) -> bool`` and ``read(path, *, skip_bad=False, **options)``, which yields
one ``EventDay`` per symbol-day the file holds. Bad records raise :class:`~tradefm.events.BadInputError`
naming the file, line or record, field and value; with ``skip_bad`` they are counted in ``EventDay.notes``.
"""

from __future__ import annotations

import errno
import importlib
import os
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

from ..events import EventDay, InputError

FORMATS = ("lobster", "databento", "bitstamp", "binance", "generic")
_MODULES = {"generic": "mapped"}  # a format's module, where its name differs


def reader(fmt: str) -> ModuleType:
    if fmt not in FORMATS:
        raise InputError(f"unknown format '{fmt}': choose one of {', '.join(FORMATS)}")
    return importlib.import_module(f"{__name__}.{_MODULES.get(fmt, fmt)}")


def detect(path: str | Path) -> str:
    """The format of a source, from its name and first bytes; ``generic`` needs to be asked for."""
    for fmt in FORMATS[:-1]:
        if reader(fmt).detect(Path(path)):
            return fmt
    raise InputError(f"{path}: cannot tell the format; pass --format ({', '.join(FORMATS)})")


def read(path: str | Path, fmt: str | None = None, *, skip_bad: bool = False, **options: object) -> Iterator[EventDay]:
    """Read any supported source into canonical symbol-days."""
    if not Path(path).exists():  # said as such, not as a format that cannot be told
        raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), str(path))
    if fmt == "generic" and "mapping" not in options:
        raise InputError(f"{path}: the generic format needs a feed mapping (--mapping feed.toml; recipes in "
                         "docs/DATA.md and examples/mappings/)")
    fmt = fmt or detect(path)
    yield from reader(fmt).read(Path(path), skip_bad=skip_bad, **options)
