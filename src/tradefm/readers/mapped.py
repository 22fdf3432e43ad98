"""The ``generic`` format: any CSV / Parquet feed read through a mapping file (:mod:`.mapping`).

A mapping names one of two layouts: a single file of events (read by :func:`.generic.read_events`), or an orders
file beside a trades file (:mod:`.order_trade`). Both build on the parsing helpers of :mod:`.generic`; this module
only finds the files and hands each symbol-day to its layout, so neither imports the other.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from ..book.stale import drop_stale
from ..events import BadInputError, EventDay
from .generic import in_sessions, read_events, sources
from .mapping import load_mapping
from .order_trade import read_pair


def detect(path: Path) -> bool:
    """Never: a mapped feed has to be asked for (``--format generic --mapping feed.toml``)."""
    return False


def read(path: Path, *, skip_bad: bool = False, mapping: str | Path | Mapping[str, Any] | None = None,
         **_: object) -> Iterator[EventDay]:
    """Read a feed through a mapping (a TOML file, see docs/DATA.md, or the same structure as a dict).

    ``path`` is a file, or a folder searched with the mapping's file patterns; each symbol-day found becomes
    canonical ``EventDay``s."""
    if mapping is None:
        raise BadInputError(str(path), "file", "mapping", None,
                            "the generic format needs a mapping file: --mapping feed.toml (recipes in docs/DATA.md)")
    spec = load_mapping(mapping)
    for files, name_symbol, name_date in sources(Path(path), spec):
        if spec.layout == "events":
            days = read_events(files["events"], spec, name_symbol, name_date, skip_bad)
        else:
            days = read_pair(files["orders"], files["trades"], spec, name_symbol, name_date, skip_bad)
        for day in days:
            if spec.stale_after_ns is None:
                yield day
            else:  # only continuous trading: an auction's book crosses until its uncross
                yield drop_stale(day, spec.stale_after_ns, in_sessions(day.table.column("ts").to_numpy(), spec))
