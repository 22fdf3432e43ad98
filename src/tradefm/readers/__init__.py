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
from typing import NamedTuple

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


class Source(NamedTuple):
    """One unit a reader reads whole: a file, or a folder such as a websocket capture split over files."""

    path: Path
    fmt: str


def sources(path: str | Path, fmt: str | None = None) -> tuple[list[Source], list[tuple[Path, str]]]:
    """What a file or folder holds to read, and what it holds that is no source (each with why). A folder that a
    reader takes whole is one source; any other folder is searched, every file in it read by the reader that
    knows it (or only by ``fmt``'s), files no reader knows set aside. A mapped feed (``generic``) searches the
    folder by the mapping's own patterns."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), str(path))
    if path.is_file() or fmt == "generic":
        return [Source(path, fmt or detect(path))], []
    found: list[Source] = []
    skipped: list[tuple[Path, str]] = []
    _walk(path, fmt, found, skipped, set())
    if not found:
        what = f"no {fmt} source" if fmt else f"no file of a known format ({', '.join(FORMATS[:-1])})"
        raise InputError(f"{path}: {what} in this folder" + ("" if fmt else "; pass --format, or --mapping"))
    return found, skipped


def _walk(folder: Path, fmt: str | None, found: list[Source], skipped: list[tuple[Path, str]],
          seen: set[Path]) -> None:
    if folder.resolve() in seen:  # a link back up the tree
        return
    seen.add(folder.resolve())
    formats = [fmt] if fmt else FORMATS[:-1]
    whole = next((f for f in formats if reader(f).detect(folder)), None)
    if whole:
        found.append(Source(folder, whole))
    for p in sorted(p for p in folder.iterdir() if not p.name.startswith(".")):
        if p.is_dir():
            _walk(p, fmt, found, skipped, seen)
        elif not whole:
            f = next((f for f in formats if reader(f).detect(p)), None)
            if f is None:
                why = f"not {fmt}" if fmt else "no known format"
            else:  # a reader may know a file that holds no events (Databento's instrument definitions)
                not_events = getattr(reader(f), "not_events", None)
                why = not_events(p) if not_events else None
            if why:
                skipped.append((p, why))
            else:
                found.append(Source(p, f))


def read(path: str | Path, fmt: str | None = None, *, skip_bad: bool = False, **options: object) -> Iterator[EventDay]:
    """Read any supported source into canonical symbol-days."""
    if not Path(path).exists():  # said as such, not as a format that cannot be told
        raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), str(path))
    if fmt == "generic" and "mapping" not in options:
        raise InputError(f"{path}: the generic format needs a feed mapping (--mapping feed.toml; recipes in "
                         "docs/DATA.md and examples/mappings/)")
    fmt = fmt or detect(path)
    yield from reader(fmt).read(Path(path), skip_bad=skip_bad, **options)
