"""A CSV/Parquet reader driven by a column mapping, plus the parsing helpers every venue reader shares.

The venue readers (``bitstamp``, ``binance``, ``databento``) import the helpers here so that decimal text, line
numbers, bad rows and day splitting behave the same everywhere. ``detect`` is always False: a generic mapping
must be asked for (``--format generic``).

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

from ..events import SCHEMA, BadInputError, EventDay, Instrument, Kind, Problems, check_events, table_from_columns

INT64_MAX = 2**63 - 1
NS_PER = {"s": 1_000_000_000, "ms": 1_000_000, "us": 1_000, "ns": 1}
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


# ---------------------------------------------------------------------------------------------- the generic reader

CANONICAL = set(SCHEMA.names)


def _lookup(codes: dict[str, int]) -> dict[str, int]:
    """Source value -> code, matching the exact text first and then case-insensitively (True / true)."""
    return {**{k.strip().lower(): v for k, v in codes.items()}, **codes}


def detect(path: Path) -> bool:
    """Never: a generic mapping has to be asked for."""
    return False


def _source_table(path: Path, column_names: Sequence[str] | None, delimiter: str) -> tuple[pa.Table, CsvStrings | None]:
    name = path.name.lower()
    if name.endswith(".parquet") or name.endswith(".pq"):
        return pq.read_table(path), None
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


def read(
    path: Path,
    *,
    skip_bad: bool = False,
    mapping: Mapping[str, str],
    symbol: str,
    venue: str,
    price_scale: int,
    size_scale: int = 1,
    tick_size: int | None = None,
    kinds: Mapping[str, str] | None = None,
    kind: str | None = None,
    sides: Mapping[str, int] | None = None,
    time_unit: str = "ns",
    timezone: str = "UTC",
    date: str | None = None,
    price_factor: int | None = None,
    size_factor: int | None = None,
    column_names: Sequence[str] | None = None,
    delimiter: str = ",",
    currency: str = "USD",
    float_decimals: int | None = None,
    **_: object,
) -> Iterator[EventDay]:
    """Read a CSV (optionally compressed) or Parquet file through a column mapping.

    ``mapping`` maps canonical columns (ts, kind, side, price, size, order_id, ts_recv, trade_id, snapshot,
    src_type) to source columns; ts, price and size are required, and kind unless ``kind`` names one Kind for
    every row. ``kinds``/``sides`` map source values (as text) to Kind names / +1, -1, 0. Prices and sizes are
    decimal text in currency / coin units, multiplied by ``price_scale`` / ``size_scale`` (or by
    ``price_factor`` / ``size_factor`` when the source is already scaled, e.g. LOBSTER prices: factor 1).
    Times are numbers in ``time_unit``; with ``date`` they are time since midnight of that day in ``timezone``.
    Parquet timestamp columns are taken as they are (``time_unit`` applies to numbers only); Parquet float
    columns are exact via ``repr`` unless ``float_decimals`` rounds them first. ``column_names`` names the
    columns of a CSV without a header line. ``tick_size`` defaults to the gcd of the observed prices."""
    path = Path(path)
    unknown = set(mapping) - CANONICAL
    if unknown:
        raise ValueError(f"mapping names unknown canonical columns: {sorted(unknown)}")
    for need in ("ts", "price", "size"):
        if need not in mapping:
            raise ValueError(f"mapping needs '{need}'")
    if "kind" not in mapping and kind is None:
        raise ValueError("give mapping['kind'] with kinds=..., or kind=<Kind name> for every row")
    if time_unit not in NS_PER:
        raise ValueError(f"time_unit must be one of {sorted(NS_PER)}")
    kind_codes = _lookup({str(k): int(Kind[v.upper()]) for k, v in (kinds or {}).items()})
    side_codes = _lookup({str(k): int(v) for k, v in (sides or {}).items()})
    if any(v not in (-1, 0, 1) for v in side_codes.values()):
        raise ValueError("sides must map to +1 (bid), -1 (ask) or 0")

    problems = Problems(str(path), skip_bad)
    src, csv = _source_table(path, column_names, delimiter)
    if csv is not None:
        report_invalid_rows(csv, path, problems)
        lines, unit = csv.lines, "line"
    else:
        lines, unit = np.arange(1, src.num_rows + 1, dtype=np.int64), "record"
    missing = [c for c in mapping.values() if c not in src.column_names]
    if missing:
        raise ValueError(f"{path}: source has no column(s) {missing}; it has {src.column_names}")
    n = src.num_rows
    errors = RowErrors(n)

    def where(i: int) -> str:
        return f"{unit} {int(lines[i])}"

    cols: dict[str, object] = {}
    texts = {canon: _as_text(src.column(source), float_decimals) for canon, source in mapping.items()}
    pyvals = {canon: t.to_pylist() for canon, t in texts.items()}

    def time_factor(canon: str) -> int:
        return 1 if pa.types.is_timestamp(src.column(mapping[canon]).type) else NS_PER[time_unit]

    ts, bad, reasons = decimal_units(texts["ts"], time_factor("ts"))
    errors.add_reasons(bad, mapping["ts"], pyvals["ts"], reasons)
    if date is not None:
        midnight = datetime.combine(Date.fromisoformat(date), datetime.min.time(), ZoneInfo(timezone))
        ts = ts + np.int64(int(midnight.timestamp()) * 1_000_000_000)
    cols["ts"] = ts
    if "ts_recv" in mapping:
        recv, bad, reasons = decimal_units(texts["ts_recv"], time_factor("ts_recv"))
        errors.add_reasons(bad, mapping["ts_recv"], pyvals["ts_recv"], reasons)
        if date is not None:
            recv = recv + np.int64(int(midnight.timestamp()) * 1_000_000_000)
        cols["ts_recv"] = recv

    price, bad, reasons = decimal_units(texts["price"], int(price_factor or price_scale))
    errors.add_reasons(bad, mapping["price"], pyvals["price"], reasons)
    cols["price"] = price
    size, bad, reasons = decimal_units(texts["size"], int(size_factor or size_scale))
    errors.add_reasons(bad, mapping["size"], pyvals["size"], reasons)
    cols["size"] = size

    for canon in ("order_id", "trade_id"):
        if canon in mapping:
            ids, bad, reasons = decimal_units(texts[canon], 1)
            errors.add_reasons(bad, mapping[canon], pyvals[canon], reasons)
            cols[canon] = ids
    cols.setdefault("order_id", np.zeros(n, dtype=np.int64))

    if "kind" in mapping:
        kv = pyvals["kind"]
        codes = np.array([kind_codes.get(str(v), kind_codes.get(str(v).strip().lower(), 0)) for v in kv],
                         dtype=np.int8)
        errors.add_mask(codes == 0, mapping["kind"], kv, f"unknown event type (known: {sorted(map(str, kinds or {}))})")
        cols["kind"] = codes
        cols["src_type"] = [str(v) for v in kv]
    else:
        cols["kind"] = np.full(n, int(Kind[str(kind).upper()]), dtype=np.int8)
        cols["src_type"] = [str(kind).lower()] * n
    if "src_type" in mapping:
        cols["src_type"] = [str(v) for v in pyvals["src_type"]]

    if "side" in mapping:
        sv = pyvals["side"]
        sd = np.array([side_codes.get(str(v), side_codes.get(str(v).strip().lower(), 9)) for v in sv],
                      dtype=np.int8)
        errors.add_mask(sd == 9, mapping["side"], sv, f"unknown side (known: {sorted(map(str, sides or {}))})")
        cols["side"] = np.where(sd == 9, 0, sd).astype(np.int8)
    else:
        cols["side"] = np.zeros(n, dtype=np.int8)

    if "snapshot" in mapping:
        truthy = {"1", "true", "t", "yes", "y"}
        cols["snapshot"] = np.array([str(v).strip().lower() in truthy for v in pyvals["snapshot"]], dtype=bool)
    else:
        cols["snapshot"] = np.zeros(n, dtype=bool)

    keep = errors.report(problems, path, where)
    locs = np.flatnonzero(keep)
    table = with_loc({k: (np.asarray(v)[keep] if isinstance(v, np.ndarray) else [v[i] for i in locs])
                      for k, v in cols.items()}, locs)
    tick = int(tick_size) if tick_size else gcd_tick(table.column("price").to_numpy())
    instrument = Instrument(
        symbol=symbol,
        venue=venue,
        price_scale=int(price_scale),
        tick_size=tick,
        size_scale=int(size_scale),
        currency=currency,
        timezone=timezone,
    )
    notes = {"reader": "generic", "rows": n, "mapping": dict(mapping)}
    yield from finish(table, path=path, instrument=instrument, where=where, problems=problems, notes=notes)
