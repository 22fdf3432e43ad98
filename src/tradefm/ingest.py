"""Ingest: raw venue files in, an event store of canonical symbol-days out, one summary per symbol-day.

A symbol-day is the store's unit, so when two sources hold the same one (LOBSTER's level-1 and level-10 files
of a day) only one is kept: the one with more events, and the summary says which was dropped."""

from __future__ import annotations

import os
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

from tqdm.auto import tqdm

from . import readers
from .book.stale import crossed_time
from .events import EventDay, Kind, day_path, write_day_file
from .parallel import Workers, map_tasks


def _span(day: EventDay) -> str:
    """First and last market event (snapshot records may carry old entry times)."""
    ts = day.table.column("ts").to_numpy()[~day.table.column("snapshot").to_numpy()]
    if not len(ts):
        return "-"
    fmt = "%H:%M:%S"
    a, b = (datetime.fromtimestamp(t / 1e9, UTC).strftime(fmt) for t in (ts.min(), ts.max()))
    return f"{a}-{b} UTC"


CROSSED_WARN = 0.01  # a replayed book crossed for more of the day than this is worth a word


def summarize(day: EventDay) -> dict[str, object]:
    """What a symbol-day holds: events by kind, snapshot and reveal records, its time span, bad rows skipped, the
    orders a lossy capture never removed, and how much of the day its replayed book is crossed."""
    t = day.table
    snap = t.column("snapshot").to_numpy()
    kinds = Counter(Kind(k).name.lower() for k in t.column("kind").to_numpy()[~snap])
    reveals = day.notes.get("reveals")
    reveals = reveals if isinstance(reveals, int) else 0
    return {"symbol": day.instrument.symbol, "venue": day.instrument.venue, "date": day.date,
            "events": int((~snap).sum()), "snapshot": int(snap.sum()) - reveals, "reveals": reveals,
            "span": _span(day),
            "kinds": dict(sorted(kinds.items())), "bad_rows": int(day.notes.get("bad_rows", 0)),
            "stale": int(day.notes.get("stale_orders_deleted", 0)),
            # a level-N feed (LOBSTER) ships its own book rows, which its reader replays against: no second replay
            "crossed": 0.0 if day.levels else round(crossed_time(day), 6)}


def _market_events(path: Path) -> int:
    """A stored day's market events (its snapshot rows left out), from the one column."""
    import pyarrow.parquet as pq

    return int((~pq.read_table(path, columns=["snapshot"]).column("snapshot").to_numpy()).sum())


def describe(s: dict[str, object], note: str = "") -> str:
    """One line for a summary (from :func:`summarize`, with its ``source``)."""
    kinds = " ".join(f"{k}={v}" for k, v in s["kinds"].items())
    return (f"{Path(str(s['source'])).name}: {s['symbol']} {s['date']} {s['events']:,} events "
            f"(+{s['snapshot']} snapshot" + (f", {s['reveals']:,} reveals" if s["reveals"] else "")
            + f") {s['span']}  {kinds}" + (f"  skipped {s['bad_rows']} bad rows" if s["bad_rows"] else "")
            + (f"  {s['stale']} stale orders deleted" if s.get("stale") else "")
            + (f"  warning: the book is crossed {s['crossed']:.0%} of the time (an auction, or a capture that missed"
               " deletes: stale_after in docs/DATA.md)" if s.get("crossed", 0) > CROSSED_WARN else "") + note)


def _ingest_source(shared: tuple[Path, bool, dict], task: tuple[int, readers.Source]) -> list[dict]:
    """Read one source and write each of its symbol-days beside its place in the store, under a name of this
    task's own (``ingest`` then keeps one per symbol-day): sources run in parallel without racing for a file."""
    out, skip_bad, options = shared
    number, src = task
    tag = f"{os.getpid()}-{number}"
    rows = []
    for day in readers.read(src.path, src.fmt, skip_bad=skip_bad, **options):
        final = day_path(out, day.instrument.venue, day.instrument.symbol, day.date)
        staged = write_day_file(day, final.with_name(f".{final.stem}.{tag}.staged"))
        rows.append({"source": str(src.path), **summarize(day), "staged": str(staged), "final": str(final)})
    return rows


def _sources(paths: list[str], fmt: str | None, quiet: bool) -> list[readers.Source]:
    """Every source the paths hold (folders searched); unless ``quiet``, one line on the files set aside."""
    found, skipped = [], []
    for path in paths:
        f, s = readers.sources(path, fmt)
        found += f
        skipped += s
    if skipped and not quiet:
        shown = ", ".join(f"{p.name} ({why})" for p, why in skipped[:3])
        tqdm.write(f"set aside {len(skipped)} file{'s' * (len(skipped) > 1)} that hold no events to read: {shown}"
                   + (", ..." if len(skipped) > 3 else ""))
    return found


def ingest(sources: list[str], out: Path, fmt: str | None, skip_bad: bool, quiet: bool = False,
           workers: Workers = 1, **options: object) -> list[dict]:
    """Read every source (a folder: every file in it that a reader knows) and write its symbol-days (each
    written whole or not at all); returns their summaries, with ``source`` and ``path``. Unless ``quiet``, one
    line per symbol-day read. ``options`` go to the reader (``mapping=`` a feed mapping for the generic one).
    One source is one task, ``workers`` at a time (:func:`tradefm.parallel.map_tasks`); which source's copy of
    a symbol-day is kept is decided in source order, so any number of workers writes the same store."""
    rows: dict[str, dict] = {}
    staged: list[Path] = []
    tasks = list(enumerate(_sources(sources, fmt, quiet)))
    try:
        for found in map_tasks(_ingest_source, tasks, (Path(out), skip_bad, options),
                               workers, "ingest", not quiet, "file"):
            staged += [Path(s["staged"]) for s in found]
            for s in found:
                path, final = Path(s.pop("staged")), Path(s.pop("final"))
                key = f"{s['venue']}/{s['symbol']}/{s['date']}"
                kept = rows.get(key)
                if kept is not None and kept["events"] >= s["events"]:
                    note = f"  (not kept: {Path(kept['source']).name} has more events for this symbol-day)"
                    path.unlink()
                else:
                    note = f"  (replaces {Path(kept['source']).name})" if kept else ""
                    if not kept and final.exists():  # from an earlier run: a re-read source replaces it
                        note = f"  (replaces the store's earlier copy, {_market_events(final):,} events)"
                    os.replace(path, final)
                    s["path"] = str(final)
                    rows[key] = s
                if not quiet:
                    tqdm.write(describe(s, note))
    finally:
        for path in staged:  # a failed run leaves no staged file behind
            path.unlink(missing_ok=True)
    return list(rows.values())
