"""The parsing helpers every reader shares, and the events layout of a feed read through a mapping.

The venue readers (``bitstamp``, ``binance``, ``databento``) and the mapped feeds (:mod:`.mapped`, the
``generic`` format) import the helpers here so that decimal text, line numbers, bad rows and day splitting behave
the same everywhere.

Decimal text is converted to integers exactly (string arithmetic / :class:`decimal.Decimal`, never a float
round trip); a value with more decimals than the scale is an error, not a rounding. Parquet float columns are
read through ``repr`` (the shortest text that round-trips the float: the writer's decimal if it parsed one),
optionally rounded first (``float_decimals``) when the floats came out of arithmetic.
"""

from __future__ import annotations

import bz2
import gzip
import lzma
import math
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date as Date
from datetime import datetime
from decimal import ROUND_HALF_EVEN, Decimal, Inexact, InvalidOperation, localcontext
from pathlib import Path
from typing import IO, Any
from zoneinfo import ZoneInfo

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pcsv
import pyarrow.parquet as pq

from ..events import BadInputError, EventDay, Instrument, Kind, Problems, check_events, table_from_columns
from .mapping import NS_PER, FeedMapping, FileSpec, TimeSpec

INT64_MAX = 2**63 - 1
_DEC_RE = r"^(?P<neg>-?)(?P<int>[0-9]{1,18})(?:\.(?P<frac>[0-9]*))?$"
LOC = "_loc"  # a temporary column: the row's index into the reader's own source-location list


# ---------------------------------------------------------------------------------------------- opening files


def open_binary(path: Path) -> IO[bytes]:
    """Open a file, decompressing by suffix (.gz .xz .lzma .bz2 .zst), so line numbers count decompressed lines."""
    suffix = path.suffix.lower()
    if suffix == ".gz":
        return gzip.open(path, "rb")
    if suffix in (".xz", ".lzma"):
        return lzma.open(path, "rb")
    if suffix == ".bz2":
        return bz2.open(path, "rb")
    if suffix in (".zst", ".zstd"):
        import zstandard

        return zstandard.ZstdDecompressor().stream_reader(open(path, "rb"), closefd=True)
    return open(path, "rb")


def head_bytes(path: Path, n: int = 4096) -> bytes:
    """The first ``n`` decompressed bytes, or b"" if the file cannot be opened (``detect`` must never raise)."""
    try:
        with open_binary(path) as f:
            return f.read(n)
    except Exception:  # OSError, EOFError, lzma/zstd decoder errors: not this format
        return b""


def first_line(path: Path) -> str:
    return head_bytes(path, 65536).split(b"\n", 1)[0].rstrip(b"\r").decode("utf-8", errors="replace")


# ---------------------------------------------------------------------------------------------- decimals


def pow10_digits(factor: int) -> int | None:
    """``d`` if ``factor == 10**d``, else None."""
    d = len(str(factor)) - 1
    return d if factor > 0 and 10**d == factor else None


def to_units(value: object, factor: int | Decimal, *, rounding: bool = False) -> int:
    """One decimal value (text, int, Decimal or float) times ``factor`` as an exact int64.

    Raises ValueError with the reason when the value is not a finite number, has more decimals than the scale
    allows (unless ``rounding``: then it is rounded half-even, for sources that wrote floats) or overflows."""
    if isinstance(value, bool):
        raise ValueError("not a number")
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError("not a finite number")
        value = repr(value)
    try:
        d = value if isinstance(value, Decimal) else Decimal(str(value).strip())
    except InvalidOperation:
        raise ValueError("not a number") from None
    if not d.is_finite():
        raise ValueError("not a finite number")
    if d and d.adjusted() > 40:
        raise ValueError("out of the int64 range")
    with localcontext() as ctx:
        ctx.prec = 120
        ctx.traps[Inexact] = True  # never round silently
        try:
            scaled = d * Decimal(factor)
        except Inexact:
            raise ValueError("too many digits") from None
    if scaled != scaled.to_integral_value():
        if not rounding:
            raise ValueError(f"more decimals than the scale {factor} allows")
        scaled = scaled.to_integral_value(rounding=ROUND_HALF_EVEN)
    out = int(scaled)
    if not -INT64_MAX <= out <= INT64_MAX:
        raise ValueError("out of the int64 range")
    return out


def decimal_units(values: pa.Array | pa.ChunkedArray, factor: int) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Decimal text column times ``factor`` -> (int64 values, bad mask, reason per bad row), exactly.

    Plain ``-123.456`` text takes a vectorised path when ``factor`` is a power of ten; anything else (exponents,
    other scales) goes through :func:`to_units`."""
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    if not pa.types.is_string(values.type) and not pa.types.is_large_string(values.type):
        values = pc.cast(values, pa.string())
    n = len(values)
    out = np.zeros(n, dtype=np.int64)
    bad = np.zeros(n, dtype=bool)
    reasons: dict[int, str] = {}
    digits = pow10_digits(factor)
    slow = np.ones(n, dtype=bool)
    if digits is not None and digits <= 18 and n:
        m = pc.extract_regex(values, _DEC_RE)
        ok = np.asarray(m.is_valid().to_numpy(zero_copy_only=False), dtype=bool)
        if ok.any():
            parts = m.filter(pa.array(ok))
            ip = pc.cast(parts.field("int"), pa.int64()).to_numpy()
            frac = parts.field("frac")
            excess = pc.utf8_slice_codeunits(frac, digits)
            exact = np.asarray(pc.match_substring_regex(excess, r"^0*$").to_numpy(zero_copy_only=False), dtype=bool)
            if digits:
                head = pc.utf8_rpad(pc.utf8_slice_codeunits(frac, 0, digits), width=digits, padding="0")
                fp = pc.cast(head, pa.int64()).to_numpy()
            else:
                fp = np.zeros(len(ip), dtype=np.int64)
            limit = (INT64_MAX - (10**digits - 1)) // 10**digits
            fits = ip <= limit
            v = np.where(fits, ip, 0) * (10**digits) + fp
            neg = np.asarray(pc.equal(parts.field("neg"), "-").to_numpy(zero_copy_only=False), dtype=bool)
            v = np.where(neg, -v, v)
            idx = np.flatnonzero(ok)
            good = exact & fits
            out[idx[good]] = v[good]
            slow[idx[good]] = False
    if slow.any():
        py = values.to_pylist()
        for i in np.flatnonzero(slow):
            s = py[i]
            if s is None:
                bad[i], reasons[int(i)] = True, "missing value"
                continue
            try:
                out[i] = to_units(s, factor)
            except ValueError as e:
                bad[i], reasons[int(i)] = True, str(e)
    return out, bad, [reasons[int(i)] for i in np.flatnonzero(bad)]


def gcd_tick(prices: np.ndarray) -> int:
    """The largest grid all observed positive prices sit on: the tick, when the file says nothing better."""
    p = np.abs(np.asarray(prices, dtype=np.int64))
    p = p[p > 0]
    return int(np.gcd.reduce(p)) if len(p) else 1


def decimals_needed(texts: Sequence[str]) -> int:
    """Most significant decimals in decimal texts (trailing zeros ignored): picks a price scale from the data."""
    best = 0
    for t in texts:
        try:
            d = Decimal(t).normalize()
        except (InvalidOperation, ValueError):
            continue  # reported as a bad value when converted
        exp = d.as_tuple().exponent
        if isinstance(exp, int):
            best = max(best, -exp)
    return best


# ---------------------------------------------------------------------------------------------- bad rows


@dataclass
class RowErrors:
    """Bad-row findings from several vectorised checks, reported in source order (the first one raises)."""

    n: int
    items: list[tuple[int, str, object, str]] = field(default_factory=list)

    def add(self, i: int, field_name: str, value: object, reason: str) -> None:
        self.items.append((int(i), field_name, value, reason))

    def add_mask(self, mask: np.ndarray, field_name: str, values: Sequence[object] | np.ndarray, reason: str) -> None:
        for i in np.flatnonzero(mask):
            v = values[i]
            self.add(int(i), field_name, v.item() if isinstance(v, np.generic) else v, reason)

    def add_reasons(self, mask: np.ndarray, field_name: str, values: Sequence[object], reasons: list[str]) -> None:
        for i, r in zip(np.flatnonzero(mask), reasons, strict=True):
            self.add(int(i), field_name, values[i], r)

    def report(self, problems: Problems, path: Path, where: Callable[[int], str]) -> np.ndarray:
        """Raise (or count) each finding in row order; return the mask of rows to keep."""
        keep = np.ones(self.n, dtype=bool)
        for i, name, value, reason in sorted(self.items, key=lambda t: t[0]):
            if not keep[i]:
                continue  # one report per row
            problems.report(BadInputError(str(path), where(i), name, value, reason))
            keep[i] = False
        return keep


def bad_notes(problems: Problems) -> dict[str, object]:
    bad = problems.bad
    out: dict[str, object] = {"bad_rows": bad.count}
    if bad.count:
        out["bad_rows_by_reason"] = dict(bad.by_reason)
        out["bad_row_examples"] = list(bad.examples)
    return out


# ---------------------------------------------------------------------------------------------- CSV


@dataclass
class CsvStrings:
    """A CSV read as text columns, with the 1-based physical line of every row kept."""

    table: pa.Table
    lines: np.ndarray  # line number of each row in the decompressed file
    invalid: list[tuple[int, str, int, int]]  # (line, text, expected columns, actual columns)


def read_csv_strings(
    path: Path, *, column_names: Sequence[str] | None = None, delimiter: str = ",", skip_rows: int = 0
) -> CsvStrings:
    """Every column as string (exact decimals); rows with the wrong column count are collected, not fatal."""
    invalid: list[tuple[int, str, int, int]] = []

    def handler(row: Any) -> str:
        invalid.append((int(row.number or 0), str(row.text), int(row.expected_columns), int(row.actual_columns)))
        return "skip"

    parse_opts = pcsv.ParseOptions(delimiter=delimiter, invalid_row_handler=handler, ignore_empty_lines=False)
    with open_binary(path) as f:
        for _ in range(skip_rows):
            f.readline()
        if column_names:
            names = list(column_names)
            header_lines = skip_rows
        else:
            names = f.readline().decode("utf-8-sig").rstrip("\r\n").split(delimiter)
            header_lines = skip_rows + 1
        read_opts = pcsv.ReadOptions(use_threads=False, column_names=names)
        convert = pcsv.ConvertOptions(
            column_types={n: pa.string() for n in names}, strings_can_be_null=False, quoted_strings_can_be_null=False
        )
        try:
            table = pcsv.read_csv(f, read_options=read_opts, parse_options=parse_opts, convert_options=convert)
        except pa.ArrowInvalid as e:
            raise BadInputError(str(path), "file", "csv", str(e)[:200], "cannot parse as CSV") from None
    invalid = [(line + header_lines, text, exp, act) for line, text, exp, act in invalid]
    skipped = np.array(sorted(i[0] for i in invalid), dtype=np.int64)
    total = table.num_rows + len(skipped)
    candidates = np.arange(header_lines + 1, header_lines + 1 + total, dtype=np.int64)
    lines = candidates[~np.isin(candidates, skipped)] if len(skipped) else candidates
    return CsvStrings(table, lines, invalid)


def report_invalid_rows(csv: CsvStrings, path: Path, problems: Problems) -> None:
    """Rows with the wrong number of columns: bad input like any other (the first one raises)."""
    for line, text, expected, actual in csv.invalid:
        if not text.strip():
            continue  # a blank line holds no record
        problems.report(
            BadInputError(
                str(path), f"line {line}", "columns", text[:200], f"expected {expected} columns, got {actual}"
            )
        )


# ---------------------------------------------------------------------------------------------- days


def day_strings(ts: np.ndarray, timezone: str = "UTC", shift_ns: int = 0) -> np.ndarray:
    """The calendar date (YYYY-MM-DD) of each ns timestamp in ``timezone``, after adding ``shift_ns``."""
    ts = np.asarray(ts, dtype=np.int64) + np.int64(shift_ns)
    if timezone == "UTC":
        days = np.floor_divide(ts, 86_400_000_000_000).astype("datetime64[D]")
        return days.astype(str)
    arr = pa.array(ts, type=pa.timestamp("ns", tz=timezone))
    return np.asarray(pc.strftime(arr, format="%Y-%m-%d").to_pylist(), dtype=object).astype(str)


def finish(
    table: pa.Table,
    *,
    path: Path,
    instrument: Instrument,
    where: Callable[[int], str],
    problems: Problems,
    notes: Mapping[str, object],
    day_shift_ns: int = 0,
    date_timezone: str | None = None,
    sources: Sequence[str] | None = None,
) -> list[EventDay]:
    """Validate a reader's table and split it into one EventDay per trading day.

    ``table`` must carry the temporary ``_loc`` column (the row's index for ``where``). Time order is checked on
    live rows only: snapshot rows carry the resting orders' own entry times. Snapshot rows go to the first day.
    The day is the date in ``date_timezone`` (default: the instrument's) after adding ``day_shift_ns``."""
    snap = np.asarray(table.column("snapshot").to_numpy(zero_copy_only=False), dtype=bool)
    if snap.any():
        parts = [
            _checked(table.filter(pa.array(snap)), path, where, problems, check_time=False),
            _checked(table.filter(pa.array(~snap)), path, where, problems, check_time=True),
        ]
        table = pa.concat_tables(parts)
        table = table.take(pc.sort_indices(table.column(LOC)))
    else:
        table = _checked(table, path, where, problems, check_time=True)
    notes = {**dict(notes), **bad_notes(problems)}
    out_table = table.drop_columns([LOC])
    if out_table.num_rows == 0:
        return []
    snap = np.asarray(out_table.column("snapshot").to_numpy(zero_copy_only=False), dtype=bool)
    ts = out_table.column("ts").to_numpy()
    dates = np.empty(len(ts), dtype=object)
    tz = date_timezone or instrument.timezone
    live = ~snap
    if live.any():
        dates[live] = day_strings(ts[live], tz, day_shift_ns)
        dates[snap] = dates[live][0]
    else:
        dates[:] = day_strings(ts, tz, day_shift_ns)
    days: list[EventDay] = []
    unique = list(dict.fromkeys(dates.tolist()))
    for d in unique:
        t = out_table.filter(pa.array(dates == d)) if len(unique) > 1 else out_table
        days.append(
            EventDay(
                instrument=instrument,
                date=str(d),
                table=t,
                sources=list(sources or [str(path)]),
                notes=dict(notes),
            )
        )
    return days


def _checked(
    table: pa.Table, path: Path, where: Callable[[int], str], problems: Problems, check_time: bool
) -> pa.Table:
    locs = table.column(LOC).to_numpy()
    return check_events(table, str(path), lambda i: where(int(locs[i])), problems, check_time=check_time)


def with_loc(columns: dict[str, object], locs: Sequence[int] | np.ndarray) -> pa.Table:
    """A canonical table plus the ``_loc`` column ``finish`` needs."""
    table = table_from_columns(columns)
    return table.append_column(LOC, pa.array(np.asarray(locs, dtype=np.int64)))



def capture_edges(is_add: Sequence[bool], is_delete: Sequence[bool], local: np.ndarray,
                  exch: np.ndarray) -> tuple[int, int]:
    """(rows of a leading book snapshot, rows of a trailing synthetic-delete block) of a live capture.

    A capture that starts from a REST snapshot writes it as a block of adds sharing one local and one exchange
    time; one that ends by deleting every resting order writes a block of deletes stamped with one time, equal in
    both columns. Neither is market activity. Blocks of fewer than two rows are not taken for either."""
    n = len(is_add)
    lead = 0
    while lead < n and is_add[lead] and local[lead] == local[0] and exch[lead] == exch[0]:
        lead += 1
    lead = lead if lead >= 2 else 0
    trail = 0
    while (trail < n - lead and is_delete[n - 1 - trail] and local[n - 1 - trail] == local[-1]
           and exch[n - 1 - trail] == local[-1]):
        trail += 1
    trail = trail if trail >= 2 else 0
    return lead, trail


# ---------------------------------------------------------------------------------------------- the generic reader


def _source_table(path: Path, column_names: Sequence[str] | None, delimiter: str) -> tuple[pa.Table, CsvStrings | None]:
    name = path.name.lower()
    if name.endswith(".parquet") or name.endswith(".pq"):
        try:
            return pq.read_table(path), None
        except (pa.ArrowInvalid, OSError) as e:
            raise BadInputError(str(path), "file", "parquet", str(e)[:200], "cannot read as Parquet") from None
    csv = read_csv_strings(path, column_names=column_names, delimiter=delimiter)
    return csv.table, csv


def _as_text(col: pa.ChunkedArray | pa.Array, float_decimals: int | None) -> pa.Array:
    """Any source column as decimal text: floats via repr (the shortest text that round-trips), rounded to
    ``float_decimals`` first when given (floats computed by arithmetic carry noise: 0.00031099999999999997)."""
    if isinstance(col, pa.ChunkedArray):
        col = col.combine_chunks()
    if pa.types.is_floating(col.type):
        vals = col.to_pylist()
        if float_decimals is not None:
            vals = [None if v is None else round(float(v), float_decimals) for v in vals]
        return pa.array([None if v is None else repr(float(v)) for v in vals], type=pa.string())
    if pa.types.is_timestamp(col.type):
        return pc.cast(pc.cast(col, pa.timestamp("ns", tz=col.type.tz)).cast(pa.int64()), pa.string())
    return pc.cast(col, pa.string())


def _days_from_civil(y: np.ndarray, m: np.ndarray, d: np.ndarray) -> np.ndarray:
    """Days since 1970-01-01 of proleptic Gregorian dates, vectorised (H. Hinnant's algorithm)."""
    y = y - (m <= 2)
    era = np.floor_divide(y, 400)
    yoe = y - era * 400
    doy = (153 * (m + np.where(m > 2, -3, 9)) + 2) // 5 + d - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146097 + doe - 719468


def _local_to_utc(naive_ns: np.ndarray, timezone: str) -> np.ndarray:
    if timezone == "UTC":
        return naive_ns
    arr = pc.assume_timezone(pa.array(naive_ns, type=pa.timestamp("ns")), timezone=timezone,
                             ambiguous="earliest", nonexistent="earliest")
    return np.asarray(arr.cast(pa.int64()).to_numpy(zero_copy_only=False), dtype=np.int64)


def _midnight_ns(date: str, timezone: str) -> int:
    return int(datetime.combine(Date.fromisoformat(date), datetime.min.time(), ZoneInfo(timezone)).timestamp()) * 10**9


def parse_times(col: pa.Array, text: pa.Array, spec: TimeSpec, date: str | None) -> tuple[np.ndarray, np.ndarray,
                                                                                             list[str]]:
    """One time column -> (UTC ns, bad mask, reason per bad row), following the mapping's ``[time]``."""
    n = len(text)
    if spec.format is None or pa.types.is_timestamp(col.type):
        factor = 1 if pa.types.is_timestamp(col.type) else NS_PER[spec.unit]
        ts, bad, why = decimal_units(text, factor)
        if date is not None and not pa.types.is_timestamp(col.type):
            ts = ts + np.int64(_midnight_ns(date, spec.timezone))
        return ts, bad, why
    if spec.format == "iso":
        try:
            out = np.asarray(pc.cast(text, pa.timestamp("ns")).cast(pa.int64()).to_numpy(zero_copy_only=False))
            bad = np.zeros(n, dtype=bool)
            reasons: list[str] = []
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):  # find the bad ones, one by one
            out = np.zeros(n, dtype=np.int64)
            bad = np.zeros(n, dtype=bool)
            reasons = []
            for i, v in enumerate(text.to_pylist()):
                try:
                    out[i] = pa.scalar(v).cast(pa.timestamp("ns")).cast(pa.int64()).as_py()
                except (pa.ArrowInvalid, pa.ArrowNotImplementedError, TypeError):
                    bad[i] = True
                    reasons.append("not an ISO-8601 time")
        out = np.array(out, dtype=np.int64)  # a writable copy
        out[~bad] = _local_to_utc(out[~bad], spec.timezone)
        return out, bad, reasons
    width = sum(w for _, w in spec.fields)
    v, bad, why = decimal_units(text, 1)
    reasons = dict(zip(np.flatnonzero(bad).tolist(), why, strict=True))
    out_of = ~bad & ((v < 0) | (v >= 10**width))
    for i in np.flatnonzero(out_of):
        reasons[int(i)] = f"not a {spec.format} time ({width} digits)"
    bad |= out_of
    parts: dict[str, np.ndarray] = {}
    rest = np.where(bad, 0, v)
    frac_ns = np.zeros(n, dtype=np.int64)
    for code, w in reversed(spec.fields):
        part = rest % 10**w
        rest = rest // 10**w
        if code == "f":
            frac_ns = part * 10 ** (9 - w) if w <= 9 else part // 10 ** (w - 9)
        else:
            parts[code] = part
    tod = ((parts["H"] * 60 + parts.get("M", 0)) * 60 + parts.get("S", 0)) * 1_000_000_000 + frac_ns
    wrong = ~bad & ((parts["H"] > 23) | (parts.get("M", np.zeros(n)) > 59) | (parts.get("S", np.zeros(n)) > 60))
    if "Y" in parts:
        wrong |= ~bad & ((parts["m"] < 1) | (parts["m"] > 12) | (parts["d"] < 1) | (parts["d"] > 31))
        days = _days_from_civil(parts["Y"], parts["m"], parts["d"])
        naive = days * 86_400_000_000_000 + tod
    else:
        day = Date.fromisoformat(str(date))
        naive = np.int64((day - Date(1970, 1, 1)).days) * 86_400_000_000_000 + tod
    for i in np.flatnonzero(wrong):
        reasons[int(i)] = f"not a valid {spec.format} time"
    bad |= wrong
    out = np.zeros(n, dtype=np.int64)
    out[~bad] = _local_to_utc(naive[~bad], spec.timezone)
    return out, bad, [reasons[int(i)] for i in np.flatnonzero(bad)]


@dataclass
class Parsed:
    """One source file read through its part of the mapping: canonical-named numpy columns of its good rows."""

    path: Path
    cols: dict[str, np.ndarray]
    lines: np.ndarray  # the source line (CSV) or record (Parquet) of each kept row
    unit: str  # "line" or "record"
    rows: int  # rows in the file
    skipped: dict[str, int]  # rows whose kind maps to "skip", per source value

    def where(self, i: int) -> str:
        return f"{self.unit} {int(self.lines[i])}"

    def __len__(self) -> int:
        return len(self.lines)


def _code(values: list[object], table: dict[str, object]) -> list[object]:
    """Source values -> codes, the exact text first, then trimmed and case-insensitively (True / true)."""
    lower = {k.strip().lower(): v for k, v in table.items()}
    return [table.get(s, lower.get(s.strip().lower())) for s in map(str, values)]


_PRICED = ("price",)
_IDS = ("order_id", "trade_id", "buy_order_id", "sell_order_id", "seq")


def parse_file(path: Path, fs: FileSpec, spec: FeedMapping, problems: Problems, date: str | None) -> Parsed:
    """Read one file of a feed and convert its mapped columns; bad rows raise or (skip_bad) are counted."""
    src, csv = _source_table(path, fs.column_names, fs.delimiter)
    for canon, col in fs.columns.items():
        if col not in src.column_names:
            have = ", ".join(src.column_names[:30])
            raise BadInputError(spec.path, "mapping", f"{fs.role}.columns.{canon}", col,
                                f"{path.name} has no column '{col}' (it has: {have})")
    if csv is not None:
        report_invalid_rows(csv, path, problems)
        lines, unit = csv.lines, "line"
    else:
        lines, unit = np.arange(1, src.num_rows + 1, dtype=np.int64), "record"
    n = src.num_rows
    errors = RowErrors(n)
    texts = {c: _as_text(src.column(s), fs.float_decimals) for c, s in fs.columns.items()}
    py = {c: t.to_pylist() for c, t in texts.items()}
    cols: dict[str, np.ndarray] = {}
    tspec = fs.time or spec.time
    if tspec.format not in (None, "iso") and not any(c == "Y" for c, _ in tspec.fields) and date is None:
        raise spec.error(f"{fs.role}.time.date" if fs.time else "time.date", None,
                         f"times of day ({tspec.format}) need a date: time.date, or {{date}} in the file pattern")
    for canon in ("ts", "ts_recv"):
        if canon in texts:
            v, bad, why = parse_times(src.column(fs.columns[canon]).combine_chunks(), texts[canon], tspec, date)
            errors.add_reasons(bad, fs.columns[canon], py[canon], why)
            cols[canon] = v
    for canon, factor in (("price", fs.price_factor or spec.price_scale), ("size", fs.size_factor or spec.size_scale)):
        v, bad, why = decimal_units(texts[canon], int(factor))
        errors.add_reasons(bad, fs.columns[canon], py[canon], why)
        cols[canon] = v
    for canon in _IDS:
        if canon in texts:
            v, bad, why = decimal_units(texts[canon], 1)
            errors.add_reasons(bad, fs.columns[canon], py[canon], why)
            cols[canon] = v
    skipped: dict[str, int] = {}
    if "kind" in texts:
        codes = _code(py["kind"], dict(fs.kinds))
        unknown = np.array([c is None for c in codes], dtype=bool)
        errors.add_mask(unknown, fs.columns["kind"], py["kind"], f"unknown value (the mapping knows: "
                        f"{', '.join(sorted(fs.kinds))})")
        cols["kind"] = np.array(["" if c is None else c for c in codes], dtype=object)
        cols["src_type"] = np.array([str(v) for v in py["kind"]], dtype=object)
    else:
        cols["kind"] = np.full(n, fs.kind or "", dtype=object)
        cols["src_type"] = np.full(n, fs.kind or "", dtype=object)
    if "src_type" in texts:
        cols["src_type"] = np.array([str(v) for v in py["src_type"]], dtype=object)
    side_col = "aggressor" if fs.role == "trades" else "side"
    if side_col in texts:
        codes = _code(py[side_col], dict(fs.sides))
        unknown = np.array([c is None for c in codes], dtype=bool)
        errors.add_mask(unknown, fs.columns[side_col], py[side_col],
                        f"unknown side (the mapping knows: {', '.join(sorted(fs.sides))})")
        cols[side_col] = np.array([0 if c is None else c for c in codes], dtype=np.int8)
    if "snapshot" in texts:
        truthy = {"1", "true", "t", "yes", "y"}
        cols["snapshot"] = np.array([str(v).strip().lower() in truthy for v in py["snapshot"]], dtype=bool)
    if "symbol" in texts:
        cols["symbol"] = np.array([str(v).strip() for v in py["symbol"]], dtype=object)
    keep = errors.report(problems, path, lambda i: f"{unit} {int(lines[i])}")
    if "kind" in cols:
        skip = cols["kind"] == "skip"
        for v in cols["src_type"][skip & keep]:
            skipped[str(v)] = skipped.get(str(v), 0) + 1
        keep &= ~skip
    return Parsed(path, {k: v[keep] for k, v in cols.items()}, lines[keep], unit, n, skipped)


def local_time_of_day(ts: np.ndarray, timezone: str) -> np.ndarray:
    """ns since local midnight of each UTC ns timestamp."""
    arr = pa.array(np.asarray(ts, dtype=np.int64), type=pa.timestamp("ns", tz=timezone))
    local = pc.local_timestamp(arr).cast(pa.int64()).to_numpy(zero_copy_only=False)
    return np.mod(local, 86_400_000_000_000)


def in_sessions(ts: np.ndarray, spec: FeedMapping) -> np.ndarray:
    """True where an event falls in continuous trading (everywhere when the mapping names no sessions)."""
    if not spec.continuous or not len(ts):
        return np.ones(len(ts), dtype=bool)
    tod = local_time_of_day(ts, spec.instrument["timezone"])
    inside = np.zeros(len(ts), dtype=bool)
    for a, b in spec.continuous:
        inside |= (tod >= a) & (tod < b)
    return inside


# ---------------------------------------------------------------------------------------------- sources


def _pattern_regex(pattern: str) -> re.Pattern[str]:
    out = ""
    for part in re.split(r"(\{symbol\}|\{date\}|\*\*/|\*|\?)", pattern):
        out += {"{symbol}": r"(?P<symbol>[^/]+?)", "{date}": r"(?P<date>\d{4}-?\d{2}-?\d{2})", "**/": r"(?:.*/)?",
                "*": r"[^/]*", "?": r"[^/]"}.get(part, re.escape(part))
    return re.compile(out + r"$", re.IGNORECASE)


def _iso(date: str | None) -> str | None:
    if date is None:
        return None
    d = date.replace("-", "")
    return f"{d[:4]}-{d[4:6]}-{d[6:]}"


def _find(root: Path, pattern: str, role: str) -> dict[tuple[str | None, str | None, str], Path]:
    """Files matching a pattern, keyed by (symbol, date, folder); the folder counts only when the pattern has
    neither placeholder, so that an orders file pairs with the trades file beside it."""
    rx = _pattern_regex(pattern)
    found: dict[tuple[str | None, str | None, str], Path] = {}
    files = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
    base = root.parent if root.is_file() else root
    by_folder = "{symbol}" not in pattern and "{date}" not in pattern
    for p in files:
        rel = p.relative_to(base).as_posix()
        m = rx.search(rel)
        if m:
            g = m.groupdict()
            key = (g.get("symbol"), _iso(g.get("date")), str(Path(rel).parent) if by_folder else "")
            if key in found:
                raise BadInputError(str(p), "file", f"{role}.file", pattern,
                                    f"matches as well as {found[key]}: one file per symbol-day (add {{symbol}} or "
                                    "{date} to the pattern)")
            found[key] = p
    return found


def sources(path: Path, spec: FeedMapping) -> list[tuple[dict[str, Path], str | None, str | None]]:
    """The files a mapping finds under ``path`` (a file or a folder): ([role -> file], symbol, date) per unit.

    File patterns may hold ``*`` and the placeholders ``{symbol}`` and ``{date}`` (YYYYMMDD or YYYY-MM-DD); the
    orders and trades files of one symbol-day are paired by them."""
    if not path.exists():
        raise BadInputError(str(path), "file", "source", str(path), "no such file or folder")
    if spec.layout == "events":
        fs = spec.events
        assert fs is not None
        if path.is_file() and not fs.pattern:
            return [({"events": path}, None, None)]
        found = _find(path, fs.pattern or "*", "events")
        if path.is_file() and not found:
            found = {(None, None, ""): path}
        if not found:
            raise BadInputError(str(path), "folder", "events.file", fs.pattern, "no file matches the mapping's pattern")
        return [({"events": p}, s, d) for (s, d, _), p in sorted(found.items(), key=lambda kv: str(kv[1]))]
    assert spec.orders is not None and spec.trades is not None
    root = path.parent if path.is_file() else path
    orders = _find(root, spec.orders.pattern or "*order*", "orders")
    trades = _find(root, spec.trades.pattern or "*trade*", "trades")
    if path.is_file():
        orders = {k: v for k, v in orders.items() if v == path or trades.get(k) == path}
        trades = {k: v for k, v in trades.items() if k in orders}
    out = []
    for key in sorted(set(orders) | set(trades), key=lambda k: (str(k[0]), str(k[1]), k[2])):
        if key not in orders or key not in trades:
            have, role = (orders, "trades") if key in orders else (trades, "orders")
            pattern = getattr(spec, role).pattern or f"*{role[:-1]}*"
            raise BadInputError(str(have[key]), "file", f"{role}.file", pattern,
                                f"no {role} file matching the pattern pairs with this one")
        out.append(({"orders": orders[key], "trades": trades[key]}, key[0], key[1]))
    if not out:
        raise BadInputError(str(path), "folder", "orders.file", spec.orders.pattern or "*order*",
                            "no orders + trades files match the mapping's patterns")
    return out


def instrument_for(spec: FeedMapping, symbol: str, prices: np.ndarray) -> Instrument:
    ins = spec.instrument
    tick = int(ins["tick_size"]) if ins.get("tick_size") else gcd_tick(prices)
    return Instrument(symbol=symbol, venue=str(ins["venue"]), price_scale=int(ins["price_scale"]), tick_size=tick,
                      size_scale=int(ins.get("size_scale", 1)), currency=str(ins.get("currency", "USD")),
                      timezone=str(ins.get("timezone", "UTC")))


def by_symbol(spec: FeedMapping, name_symbol: str | None, parsed: list[Parsed]) -> list[tuple[str, list[np.ndarray]]]:
    """Row selections per symbol: one symbol from the mapping or the file name, or the files' symbol column."""
    fixed = spec.instrument.get("symbol") or name_symbol
    if fixed or not all("symbol" in p.cols for p in parsed):
        if not fixed:
            raise spec.error("instrument.symbol", None,
                             "missing: give instrument.symbol, {symbol} in the file pattern, or a symbol column")
        return [(str(fixed), [np.arange(len(p)) for p in parsed])]
    names = sorted(set().union(*(set(p.cols["symbol"].tolist()) for p in parsed)))
    return [(s, [np.flatnonzero(p.cols["symbol"] == s) for p in parsed]) for s in names]


def file_date(spec_time: TimeSpec, name_date: str | None, path: Path, spec: FeedMapping) -> str | None:
    if spec_time.date == "file":
        if name_date is None:
            raise spec.error("time.date", "file", f"{path.name}: the file pattern has no {{date}} to take it from")
        return name_date
    return spec_time.date


_KIND_CODE = {k.name.lower(): int(k) for k in Kind}


def read_events(path: Path, spec: FeedMapping, name_symbol: str | None, name_date: str | None,
                 skip_bad: bool) -> Iterator[EventDay]:
    fs = spec.events
    assert fs is not None
    problems = Problems(str(path), skip_bad)
    p = parse_file(path, fs, spec, problems, file_date(fs.time or spec.time, name_date, path, spec))
    n = len(p)
    kind = np.array([_KIND_CODE.get(k, 0) for k in p.cols["kind"]], dtype=np.int8)
    notes: dict[str, object] = {"reader": "generic.events", "rows": p.rows, "mapping": spec.path}
    if p.skipped:
        notes["rows_skipped_by_kind"] = dict(p.skipped)
    keep = np.ones(n, dtype=bool)
    inside = in_sessions(p.cols["ts"], spec)
    if spec.continuous and spec.outside == "drop":
        keep &= inside
        notes["rows_outside_sessions_dropped"] = int((~inside).sum())
    elif spec.continuous:
        prints = ~inside & (kind == Kind.TRADE)
        kind[prints] = Kind.CROSS
        notes["trades_outside_sessions_as_cross"] = int(prints.sum())
    cols: dict[str, object] = {
        "ts": p.cols["ts"], "kind": kind, "side": p.cols.get("side", np.zeros(n, dtype=np.int8)),
        "price": p.cols["price"], "size": p.cols["size"],
        "order_id": p.cols.get("order_id", np.zeros(n, dtype=np.int64)),
        "snapshot": p.cols.get("snapshot", np.zeros(n, dtype=bool)), "src_type": p.cols["src_type"],
    }
    for c in ("ts_recv", "trade_id"):
        if c in p.cols:
            cols[c] = p.cols[c]
    for symbol, (rows,) in by_symbol(spec, name_symbol, [p]):
        sel = rows[keep[rows]]
        table = with_loc({k: np.asarray(v)[sel] for k, v in cols.items()}, sel)
        ins = instrument_for(spec, symbol, table.column("price").to_numpy())
        yield from finish(table, path=path, instrument=ins, where=p.where, problems=problems, notes=notes)
