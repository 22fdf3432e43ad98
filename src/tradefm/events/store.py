"""Parquet storage of canonical events: one file per symbol-day, written atomically.

Layout: ``ROOT/venue=<venue>/symbol=<symbol>/date=<YYYY-MM-DD>/events.parquet`` (hive-style, so
``pyarrow.dataset`` reads a whole store with the partition columns)."""

from __future__ import annotations

import errno
import json
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from .errors import InputError
from .schema import SCHEMA, EventDay, Instrument

FILE_NAME = "events.parquet"
_UMASK = os.umask(0)
os.umask(_UMASK)


def day_path(root: str | Path, venue: str, symbol: str, date: str) -> Path:
    safe = symbol.replace("/", "-")
    return Path(root) / f"venue={venue}" / f"symbol={safe}" / f"date={date}" / FILE_NAME


@contextmanager
def atomic_path(final: Path) -> Iterator[Path]:
    """Yield a temporary path beside ``final``; rename it into place only if the block succeeds."""
    final.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{final.name}.", suffix=".tmp", dir=final.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes files private; the result should be like any other file
        os.replace(tmp, final)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_day(day: EventDay, root: str | Path) -> Path:
    """Write one symbol-day into a store; a crash or error leaves no partial file behind."""
    return write_day_file(day, day_path(root, day.instrument.venue, day.instrument.symbol, day.date))


def write_day_file(day: EventDay, path: str | Path) -> Path:
    """Write one symbol-day to a given Parquet file, atomically, with its instrument and notes as metadata."""
    table = day.table.select(SCHEMA.names).cast(SCHEMA).replace_schema_metadata(day.metadata())
    path = Path(path)
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp, compression="zstd")
    return path


def read_day(path: str | Path, columns: list[str] | None = None) -> EventDay:
    """One symbol-day file; anything else (a folder, a file that is not Parquet, a Parquet file tradefm did not
    write) is an :class:`InputError` saying so, not a failure deep inside pyarrow."""
    path = Path(path)
    if path.is_dir():
        raise InputError(f"{path}: a folder, not a symbol-day file ({FILE_NAME})")
    if not path.exists():
        raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), str(path))
    try:  # one file, read as a file: pq.read_table would import pyarrow.dataset (and pandas) for it
        with pq.ParquetFile(path) as file:
            schema = file.schema_arrow
            raw = (schema.metadata or {}).get(b"tradefm")
            if raw is None:
                raise InputError(f"{path}: not a symbol-day file (a Parquet file without tradefm's metadata)")
            missing = [c for c in columns or () if c not in schema.names]
            if missing:
                raise InputError(f"{path}: not a readable symbol-day file (no column {', '.join(missing)})")
            table = file.read(columns=columns)
    except pa.ArrowException as e:
        raise InputError(f"{path}: not a readable Parquet file ({e})") from None
    try:
        meta = json.loads(raw)
        return EventDay(
            instrument=Instrument(**meta["instrument"]),
            date=meta["date"],
            table=table.replace_schema_metadata(None),
            sources=meta.get("sources", []),
            notes=meta.get("notes", {}),
        )
    except (TypeError, KeyError, ValueError) as e:
        raise InputError(f"{path}: not a symbol-day file (its tradefm metadata is missing or incomplete: "
                         f"{type(e).__name__} {e})") from None


def stored_rows(path: str | Path) -> int | None:
    """A symbol-day file's row count, from its footer alone (None if it cannot be read: reading it says why)."""
    try:
        return pq.read_metadata(path).num_rows
    except (OSError, pa.ArrowException):
        return None


def copy_day(path: str | Path, root: str | Path, symbol: str | None = None, date: str | None = None) -> Path:
    """A stored symbol-day written into a store under another symbol and/or date, its times moved by the whole
    days between the dates: many symbol-days made from a few real ones without reading raw files again (for
    tests and benchmarks at scale). The copy's events are the original's, so it tokenizes the same."""
    from dataclasses import replace
    from datetime import date as Date

    import pyarrow.compute as pc

    day = read_day(path)
    new_date = date or day.date
    shift = (Date.fromisoformat(new_date) - Date.fromisoformat(day.date)).days * 86_400 * 10**9
    table = day.table
    for name in ("ts", "ts_recv"):
        i = table.schema.get_field_index(name)
        table = table.set_column(i, name, pc.add(table.column(name), pa.scalar(shift, pa.int64())))
    inst = replace(day.instrument, symbol=symbol or day.instrument.symbol)
    return write_day(EventDay(inst, new_date, table, day.sources, day.notes), root)


def list_days(root: str | Path) -> list[Path]:
    """Every symbol-day file under a store, in a stable order."""
    return sorted(Path(root).glob(f"venue=*/symbol=*/date=*/{FILE_NAME}"))


def table_from_columns(columns: dict[str, object]) -> pa.Table:
    """Build a canonical table from column arrays; missing nullable columns become nulls."""
    n = len(next(iter(columns.values())))
    arrays = []
    for f in SCHEMA:
        if f.name in columns:
            arrays.append(pa.array(columns[f.name], type=f.type))
        elif f.nullable:
            arrays.append(pa.nulls(n, type=f.type))
        else:
            raise KeyError(f"column '{f.name}' is required")
    return pa.Table.from_arrays(arrays, schema=SCHEMA)
