"""LOBSTER (lobsterdata.com) message and orderbook files, read straight from the downloaded zip or a folder.

A message file has no header: ``time`` (seconds after midnight, venue time, ns decimals), ``type`` (1 add,
2 partial cancel, 3 delete, 4 visible execution, 5 hidden execution, 6 cross trade, 7 halt), ``order_id``,
``size``, ``price`` (USD x 10000) and ``direction`` (1 buy, -1 sell). Row i of the orderbook file is the book
after message i: per level ``ask price, ask size, bid price, bid size``, empty levels as dummy prices with size 0.
Orders resting before the session start are only visible in the first orderbook row: they become the
snapshot (``snapshot=True``, anonymous ``order_id`` 0) at the session start.
"""

from __future__ import annotations

import io
import re
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import IO
from zoneinfo import ZoneInfo

import numpy as np
import pyarrow as pa
import pyarrow.csv as pcsv

from ..book.check import ReplayReport, check_rows
from ..events import BadInputError, EventDay, InputError, Instrument, Kind, Problems, check_events, table_from_columns
from .generic import bad_notes

NAME = re.compile(r"(?P<ticker>[A-Za-z0-9.\-]+)_(?P<date>\d{4}-\d{2}-\d{2})_(?P<start>\d+)_(?P<end>\d+)_"
                  r"(?P<what>message|orderbook)_(?P<level>\d+)\.csv$")
DUMMY_ASK, DUMMY_BID = 9999999999, -9999999999
PRICE_SCALE = 10_000  # LOBSTER prices are USD x 10000
TICK = 100  # one cent: the Nasdaq tick for stocks priced at $1 or more
TZ = "America/New_York"
MESSAGE_COLUMNS = ("time", "type", "order_id", "size", "price", "direction")


@dataclass(frozen=True)
class LobsterFiles:
    """Where one symbol-day's message and orderbook files are (a zip or a folder)."""

    container: Path
    message: str
    orderbook: str | None
    ticker: str
    date: str
    start_ms: int
    end_ms: int
    level: int

    def open(self, member: str) -> IO[bytes]:
        if self.container.is_dir():
            return open(self.container / member, "rb")
        return zipfile.ZipFile(self.container).open(member)

    def where(self, member: str) -> str:
        return f"{self.container}/{member}" if self.container.is_dir() else f"{self.container}!{member}"


def find(path: Path) -> list[LobsterFiles]:
    """Every message file (with its orderbook file) in a zip, a folder, or named directly."""
    if path.is_file() and path.suffix == ".csv":
        container, names = path.parent, [path.name]
    elif path.is_dir():
        container, names = path, sorted(p.name for p in path.iterdir())
    elif zipfile.is_zipfile(path):
        container, names = path, sorted(zipfile.ZipFile(path).namelist())
    else:
        raise InputError(f"{path}: not a LOBSTER zip, folder or message file")
    found = []
    for name in names:
        m = NAME.search(name)
        if not m or m["what"] != "message":
            continue
        book = name.replace("_message_", "_orderbook_")
        book_ok = (container / book).exists() if container.is_dir() else book in zipfile.ZipFile(container).namelist()
        found.append(LobsterFiles(container, name, book if book_ok else None, m["ticker"], m["date"],
                                  int(m["start"]), int(m["end"]), int(m["level"])))
    if not found:
        raise InputError(f"{path}: no LOBSTER message file (TICKER_DATE_START_END_message_LEVEL.csv) found")
    return found


def detect(path: Path) -> bool:
    try:
        return bool(find(path))
    except (ValueError, OSError, zipfile.BadZipFile):
        return False


def _locate_parse_error(files: LobsterFiles, member: str, ncols: int, err: Exception) -> BadInputError:
    """pyarrow says *that* a CSV is bad; scan it once more to say *where*."""
    with files.open(member) as f:
        for lineno, raw in enumerate(io.TextIOWrapper(f, encoding="ascii", errors="replace"), start=1):
            fields = raw.rstrip("\r\n").split(",")
            if len(fields) != ncols:
                return BadInputError(files.where(member), f"line {lineno}", "columns", len(fields),
                                     f"expected {ncols} columns")
            for col, text in enumerate(fields):
                try:
                    float(text)
                except ValueError:
                    name = MESSAGE_COLUMNS[col] if ncols == 6 else f"column {col + 1}"
                    return BadInputError(files.where(member), f"line {lineno}", name, text, "not a number")
    return BadInputError(files.where(member), "somewhere", "file", "", f"unparsable CSV: {err}")


def _read_csv(files: LobsterFiles, member: str, ncols: int, types: dict[str, pa.DataType],
              problems: Problems) -> pa.Table:
    names = list(types)
    opts = dict(read_options=pcsv.ReadOptions(column_names=names),
                convert_options=pcsv.ConvertOptions(column_types=types))
    try:
        with files.open(member) as f:
            return pcsv.read_csv(f, **opts)
    except pa.ArrowInvalid as err:
        bad = _locate_parse_error(files, member, ncols, err)
        if not problems.skip_bad:
            raise bad from None
    # --skip-bad: parse line by line, counting what cannot be read
    rows: list[list[float]] = []
    with files.open(member) as f:
        for lineno, raw in enumerate(io.TextIOWrapper(f, encoding="ascii", errors="replace"), start=1):
            fields = raw.rstrip("\r\n").split(",")
            try:
                if len(fields) != ncols:
                    raise BadInputError(files.where(member), f"line {lineno}", "columns", len(fields),
                                        f"expected {ncols} columns")
                rows.append([float(x) for x in fields])
            except ValueError as e:
                problems.report(e if isinstance(e, BadInputError) else
                                BadInputError(files.where(member), f"line {lineno}", "row", raw.strip(), str(e)))
    arr = np.array(rows, dtype=np.float64).reshape(-1, ncols)
    return pa.table({n: pa.array(arr[:, i]).cast(t, safe=False) for i, (n, t) in enumerate(types.items())})


def session_start_ns(date: str, tz: str = TZ) -> int:
    """UTC ns of midnight of ``date`` in the venue's time zone (LOBSTER times count from there)."""
    midnight = datetime.fromisoformat(date).replace(tzinfo=ZoneInfo(tz))
    return int(midnight.timestamp()) * 1_000_000_000


def read_messages(files: LobsterFiles, problems: Problems) -> tuple[pa.Table, np.ndarray]:
    """The message file as canonical columns (without snapshot), plus each row's source line number."""
    types = {"time": pa.float64(), "type": pa.int64(), "order_id": pa.int64(), "size": pa.int64(),
             "price": pa.int64(), "direction": pa.int64()}
    raw = _read_csv(files, files.message, 6, types, problems)
    t = raw.column("time").to_numpy()
    kind = raw.column("type").to_numpy()
    ts = session_start_ns(files.date) + np.rint(t * 1e9).astype(np.int64)
    side = raw.column("direction").to_numpy()
    side = np.where(kind == Kind.HALT, 0, side)
    table = table_from_columns({
        "ts": ts, "kind": kind.astype(np.int8, copy=False), "side": side.astype(np.int8),
        "price": raw.column("price").to_numpy(), "size": raw.column("size").to_numpy(),
        "order_id": raw.column("order_id").to_numpy(), "snapshot": np.zeros(len(ts), dtype=bool),
        "src_type": kind.astype(str),
    })
    lines = np.arange(1, len(ts) + 1)
    where = files.where(files.message)
    drop = np.zeros(len(ts), dtype=bool)
    for bad, name, values, reason in (
        (~np.isin(kind, np.arange(1, 8)), "type", kind, "unknown event type (LOBSTER types are 1-7)"),
        (np.isin(kind, np.arange(1, 7)) & ~np.isin(side, (1, -1)), "direction", side, "must be 1 (buy) or -1 (sell)"),
    ):
        for i in np.flatnonzero(bad):  # checked here, before the int8 cast could hide a value
            problems.report(BadInputError(where, f"line {i + 1}", name, int(values[i]), reason))
        drop |= bad
    if drop.any():
        table, lines = table.filter(pa.array(~drop)), lines[~drop]
    table = check_events(table.append_column("_line", pa.array(lines)), where,
                         lambda i: f"line {lines[i]}", problems)
    return table.drop_columns("_line"), table.column("_line").to_numpy()


def iter_orderbook(files: LobsterFiles, chunk_rows: int = 1 << 15, problems: Problems | None = None
                   ) -> Iterator[np.ndarray]:
    """Stream the orderbook file as int64 arrays [rows, 4 * level], without holding the whole file."""
    if files.orderbook is None:
        raise InputError(f"{files.where(files.message)}: no orderbook file beside it")
    problems = problems or Problems(files.orderbook, False)
    ncols = 4 * files.level
    names = [f"c{i}" for i in range(ncols)]
    block = max(1 << 16, chunk_rows * ncols * 12)
    opts = pcsv.ReadOptions(column_names=names, block_size=block)
    conv = pcsv.ConvertOptions(column_types={n: pa.int64() for n in names})
    where = files.where(files.orderbook)
    row0 = 0
    with files.open(files.orderbook) as f:
        try:
            reader = pcsv.open_csv(f, read_options=opts, convert_options=conv)
            for batch in reader:
                arr = np.column_stack([c.to_numpy() for c in batch.columns]) if batch.num_rows else \
                    np.zeros((0, ncols), dtype=np.int64)
                ask, bid = arr[:, 0], arr[:, 2]
                crossed = (ask != DUMMY_ASK) & (bid != DUMMY_BID) & (ask <= bid) & (arr[:, 1] > 0) & (arr[:, 3] > 0)
                if crossed.any():
                    i = int(np.flatnonzero(crossed)[0])
                    problems.report(BadInputError(where, f"line {row0 + i + 1}", "ask_price_1", int(ask[i]),
                                                  f"crossed book: best ask {ask[i]} <= best bid {bid[i]}"))
                row0 += len(arr)
                yield arr
        except pa.ArrowInvalid as err:
            raise _locate_parse_error(files, files.orderbook, ncols, err) from None


def first_row(files: LobsterFiles) -> np.ndarray:
    return next(iter_orderbook(files, chunk_rows=16))[0]


def initial_book(row0: np.ndarray, first: dict[str, int]) -> list[tuple[int, int, int]]:
    """(side, price, size) of the book *before* the first message: row 0 with that message undone."""
    levels: dict[tuple[int, int], int] = {}
    for j in range(len(row0) // 4):
        ap, aq, bp, bq = row0[4 * j: 4 * j + 4]
        if aq > 0:
            levels[(-1, int(ap))] = int(aq)
        if bq > 0:
            levels[(1, int(bp))] = int(bq)
    key = (first["side"], first["price"])
    if first["kind"] == Kind.ADD:
        levels[key] = levels.get(key, 0) - first["size"]
    elif first["kind"] in (Kind.CANCEL, Kind.DELETE, Kind.EXECUTE):
        levels[key] = levels.get(key, 0) + first["size"]
    ordered = sorted(levels.items(), key=lambda kv: (kv[0][0], kv[0][0] * -kv[0][1]))
    return [(side, price, size) for (side, price), size in ordered if size > 0]


def read(path: Path, *, skip_bad: bool = False, reveals: bool = True) -> Iterator[EventDay]:
    for files in find(Path(path)):
        yield read_files(files, skip_bad=skip_bad, reveals=reveals)


def read_files(files: LobsterFiles, skip_bad: bool = False, reveals: bool = True) -> EventDay:
    """One symbol-day: the initial book (snapshot), the messages, and, with ``reveals``, each level that enters
    the window from beyond the book's known depth, as a snapshot add right after the message that uncovered it.

    A level-N file carries only events inside N levels, so without the reveals a book built from the events
    alone loses its deeper levels; with them, the events alone rebuild every orderbook row (tested)."""
    problems = Problems(files.where(files.message), skip_bad)
    table, _ = read_messages(files, problems)
    snap = table.slice(0, 0)
    notes: dict[str, object] = {"levels": files.level, "session_ms": [files.start_ms, files.end_ms]}
    if files.orderbook is not None and table.num_rows:
        first = {k: table.column(k)[0].as_py() for k in ("kind", "side", "price", "size")}
        book = initial_book(first_row(files), first)
        start = session_start_ns(files.date) + files.start_ms * 1_000_000
        snap = _snapshot_rows(min(start, table.column("ts")[0].as_py()), book, "orderbook")
    notes["snapshot_levels"] = snap.num_rows
    notes.update(bad_notes(problems))
    day = EventDay(
        instrument=Instrument(symbol=files.ticker, venue="nasdaq", price_scale=PRICE_SCALE, tick_size=TICK,
                              timezone=TZ),
        date=files.date, table=pa.concat_tables([snap, table]), sources=[files.where(files.message)], notes=notes,
    )
    if reveals and files.orderbook is not None and table.num_rows:
        if problems.bad.count:  # dropped messages no longer line up with orderbook rows
            notes["reveals"] = "not added: bad rows were skipped, so messages and orderbook rows do not line up"
        else:
            day = _with_reveals(day, files)
    return day


def _snapshot_rows(ts: int | np.ndarray, levels: list[tuple[int, int, int]], src: str) -> pa.Table:
    n = len(levels)
    return table_from_columns({
        "ts": np.broadcast_to(np.asarray(ts, dtype=np.int64), (n,)), "kind": np.full(n, int(Kind.ADD), np.int8),
        "side": [b[0] for b in levels], "price": [b[1] for b in levels], "size": [b[2] for b in levels],
        "order_id": np.zeros(n, np.int64), "snapshot": np.ones(n, bool), "src_type": [src] * n,
    })


def replay_files(files: LobsterFiles, day: EventDay, progress: bool = False,
                 chunk_rows: int = 4096) -> tuple[ReplayReport, np.ndarray]:
    """Replay one LOBSTER day (read without reveals) against its orderbook file.

    Returns the report and the reveals as rows of (message index, side, price, size)."""
    return check_rows(day, iter_orderbook(files, chunk_rows=chunk_rows), files.level,
                      source=files.where(files.message), symbol=files.ticker,
                      rows_source=files.where(files.orderbook or files.message), progress=progress)


def _with_reveals(day: EventDay, files: LobsterFiles) -> EventDay:
    report, found = replay_files(files, day)  # the engine finds the reveals: it knows what the book knows
    if not report.exact:
        raise BadInputError(files.where(files.orderbook), f"line {report.first_mismatch + 1}", "orderbook row",
                            "", "the messages do not reproduce this book state (corrupt or mismatched files)")
    t = day.table
    n_snap = int(day.notes["snapshot_levels"])
    msg_ts = t.column("ts").to_numpy()[n_snap:]
    rev = _snapshot_rows(msg_ts[found[:, 0]], [tuple(r) for r in found[:, 1:].tolist()], "reveal")
    # order: snapshot, then each message followed by the reveals it uncovered
    key = np.concatenate([np.full(n_snap, -1), 2 * np.arange(len(msg_ts)), 2 * found[:, 0] + 1])
    table = pa.concat_tables([t, rev]).take(pa.array(np.argsort(key, kind="stable")))
    notes = {**day.notes, "reveals": len(found)}
    return EventDay(day.instrument, day.date, table, day.sources, notes)
