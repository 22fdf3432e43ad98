"""Ingest: raw venue files in, an event store of canonical symbol-days out, one summary per symbol-day.

A symbol-day is the store's unit, so when two sources hold the same one (LOBSTER's level-1 and level-10 files
of a day) only one is kept: the one with more events, and the summary says which was dropped."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

from tqdm.auto import tqdm

from . import readers
from .events import EventDay, Kind, write_day


def _span(day: EventDay) -> str:
    """First and last market event (snapshot records may carry old entry times)."""
    ts = day.table.column("ts").to_numpy()[~day.table.column("snapshot").to_numpy()]
    if not len(ts):
        return "-"
    fmt = "%H:%M:%S"
    a, b = (datetime.fromtimestamp(t / 1e9, UTC).strftime(fmt) for t in (ts.min(), ts.max()))
    return f"{a}-{b} UTC"


def summarize(day: EventDay) -> dict[str, object]:
    """What a symbol-day holds: events by kind, snapshot and reveal records, its time span, bad rows skipped."""
    t = day.table
    snap = t.column("snapshot").to_numpy()
    kinds = Counter(Kind(k).name.lower() for k in t.column("kind").to_numpy()[~snap])
    reveals = day.notes.get("reveals")
    reveals = reveals if isinstance(reveals, int) else 0
    return {"symbol": day.instrument.symbol, "venue": day.instrument.venue, "date": day.date,
            "events": int((~snap).sum()), "snapshot": int(snap.sum()) - reveals, "reveals": reveals,
            "span": _span(day),
            "kinds": dict(sorted(kinds.items())), "bad_rows": int(day.notes.get("bad_rows", 0))}


def describe(s: dict[str, object], note: str = "") -> str:
    """One line for a summary (from :func:`summarize`, with its ``source``)."""
    kinds = " ".join(f"{k}={v}" for k, v in s["kinds"].items())
    return (f"{Path(str(s['source'])).name}: {s['symbol']} {s['date']} {s['events']:,} events "
            f"(+{s['snapshot']} snapshot" + (f", {s['reveals']:,} reveals" if s["reveals"] else "")
            + f") {s['span']}  {kinds}" + (f"  skipped {s['bad_rows']} bad rows" if s["bad_rows"] else "") + note)


def ingest(sources: list[str], out: Path, fmt: str | None, skip_bad: bool, quiet: bool = False,
           **options: object) -> list[dict]:
    """Read every source and write its symbol-days (each written whole or not at all); returns their summaries,
    with ``source`` and ``path``. Unless ``quiet``, one line per symbol-day read. ``options`` go to the reader
    (``mapping=`` a feed mapping for the generic one)."""
    rows: dict[str, dict] = {}
    for src in tqdm(sources, desc="ingest", unit="file", disable=quiet):
        for day in readers.read(src, fmt, skip_bad=skip_bad, **options):
            s = {"source": src, **summarize(day)}
            key = f"{s['venue']}/{s['symbol']}/{s['date']}"
            kept = rows.get(key)
            if kept is not None and kept["events"] >= s["events"]:
                note = f"  (not kept: {Path(kept['source']).name} has more events for this symbol-day)"
            else:
                s["path"] = str(write_day(day, out))
                note = f"  (replaces {Path(kept['source']).name})" if kept else ""
                rows[key] = s
            if not quiet:
                tqdm.write(describe(s, note))
    return list(rows.values())
