"""Replay a recorded feed through the engine and check the book against the venue's own book, row by row.

For LOBSTER a level-N message file carries only the events inside the N visible levels, so the book keeps
N levels per side, and the one thing it may take from the orderbook file after its first row is a *reveal*:
a level entering the window from beyond the deepest level the book knows. Reveals are counted; everything
else (every price and size of every level of every row) must already be right. The check itself is
:mod:`tradefm.book.check`; this module is its LOBSTER front end."""

from __future__ import annotations

import errno
import os
from pathlib import Path

from ..readers import lobster
from ..readers.lobster import replay_files
from .check import ReplayReport, event_arrays

__all__ = ["ReplayReport", "event_arrays", "replay_files", "replay_lobster"]


def replay_lobster(path: str | Path, progress: bool = False, chunk_rows: int = 4096) -> list[ReplayReport]:
    """Replay every message file of a LOBSTER zip or folder and compare with its orderbook file."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), str(path))
    reports = []
    for files in lobster.find(path):
        day = lobster.read_files(files, reveals=False)
        reports.append(replay_files(files, day, progress, chunk_rows)[0])
    return reports
