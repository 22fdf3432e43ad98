"""A feed mapping: one TOML file that tells the generic reader how any CSV / Parquet feed becomes canonical events.

One schema covers the two layouts vendors ship: a single file of events (LOBSTER-like), and an orders file beside
a trades file in which each trade names its buy and its sell order (Bitstamp's captures, China A-share level-2
tick-by-tick data from SSE and SZSE). The venue conventions that need code (how an order row reports its size,
who was resting) are named values of a few keys, not flags; docs/DATA.md has complete recipes and
``examples/mappings/`` the same files. Every mistake is a :class:`BadInputError` naming the mapping file, the key
and the value, so a user sees one line.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..events import BadInputError, Kind

NS_PER = {"s": 1_000_000_000, "ms": 1_000_000, "us": 1_000, "ns": 1}
LAYOUTS = ("events", "orders+trades")
SIZES = ("full", "after_trades", "remaining")
OUTSIDE = ("drop", "mark")
SIDE_NAMES = {"buy": 1, "bid": 1, "b": 1, "sell": -1, "ask": -1, "offer": -1, "s": -1, "none": 0, "n": 0}
ORDER_ACTIONS = ("add", "cancel", "delete", "modify", "change", "skip")
TRADE_ACTIONS = ("trade", "cancel", "skip")
EVENT_COLUMNS = ("ts", "kind", "side", "price", "size", "order_id", "ts_recv", "trade_id", "snapshot", "src_type",
                 "symbol")
ORDER_COLUMNS = ("ts", "ts_recv", "order_id", "side", "price", "size", "kind", "seq", "symbol")
TRADE_COLUMNS = ("ts", "ts_recv", "trade_id", "buy_order_id", "sell_order_id", "price", "size", "aggressor", "kind",
                 "seq", "symbol")
_TIME_CODES = {"Y": 4, "m": 2, "d": 2, "H": 2, "M": 2, "S": 2}
_TOD_RE = re.compile(r"^(\d{1,2}):(\d{2})(?::(\d{2}))?$")


@dataclass(frozen=True)
class TimeSpec:
    """How a time column reads: a number in ``unit`` (epoch, or since local midnight of ``date``), a digit layout
    such as ``%Y%m%d%H%M%S%3f`` (``20240102093000120``; ``%H%M%S%2f`` for ``9300054``), or ``iso`` text. ``date``
    is ``YYYY-MM-DD`` or ``"file"``: the ``{date}`` of the file name."""

    unit: str = "ns"
    format: str | None = None
    date: str | None = None
    timezone: str = "UTC"
    fields: tuple[tuple[str, int], ...] = ()  # the parsed digit layout


@dataclass(frozen=True)
class FileSpec:
    """One source file: its name pattern, columns and value maps."""

    role: str  # events / orders / trades
    columns: dict[str, str]
    pattern: str | None = None
    kinds: dict[str, str] = field(default_factory=dict)
    kind: str | None = None  # one kind for every row when there is no kind column
    sides: dict[str, int] = field(default_factory=dict)
    column_names: tuple[str, ...] | None = None
    delimiter: str = ","
    price_factor: int | None = None
    size_factor: int | None = None
    float_decimals: int | None = None
    time: TimeSpec | None = None  # overrides the mapping's [time] for this file


@dataclass(frozen=True)
class FeedMapping:
    path: str  # where the mapping came from, for error messages
    layout: str
    instrument: dict[str, Any]
    time: TimeSpec
    events: FileSpec | None = None
    orders: FileSpec | None = None
    trades: FileSpec | None = None
    sizes: str = "full"
    continuous: tuple[tuple[int, int], ...] = ()  # local time-of-day ns windows [start, end)
    outside: str = "mark"
    leading_snapshot: bool = False
    trailing_deletes: str = "keep"
    stale_after_ns: int | None = None  # a book crossed this long in continuous trading: the feed missed deletes

    def error(self, key: str, value: object, reason: str) -> BadInputError:
        return BadInputError(self.path, "mapping", key, value, reason)

    @property
    def price_scale(self) -> int:
        return int(self.instrument["price_scale"])

    @property
    def size_scale(self) -> int:
        return int(self.instrument.get("size_scale", 1))


def load_mapping(source: str | Path | Mapping[str, Any]) -> FeedMapping:
    """A mapping from a TOML file or from the same structure as a dict (for code and tests)."""
    if isinstance(source, Mapping):
        return _build(dict(source), "<mapping>")
    path = Path(source)
    try:
        text = path.read_bytes().decode("utf-8")
    except FileNotFoundError:
        raise BadInputError(str(path), "file", "mapping", str(path), "no such mapping file") from None
    except (OSError, UnicodeDecodeError) as e:
        raise BadInputError(str(path), "file", "mapping", str(path), f"cannot read: {e}") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise BadInputError(str(path), "file", "toml", None, f"not valid TOML: {e}") from None
    return _build(data, str(path))


# ---------------------------------------------------------------------------------------------- building


class _Keys:
    """Reads a TOML table, remembering the dotted key of each value so an error can name it."""

    def __init__(self, path: str, data: Mapping[str, Any], prefix: str, allowed: tuple[str, ...]) -> None:
        self.path, self.data, self.prefix = path, data, prefix
        if not isinstance(data, Mapping):
            raise self.err("", data, "must be a table")
        for k in data:
            if k not in allowed:
                raise self.err(k, data[k], f"unknown key (known: {', '.join(allowed)})")

    def key(self, k: str) -> str:
        return f"{self.prefix}{k}" if k else self.prefix.rstrip(".")

    def err(self, k: str, value: object, reason: str) -> BadInputError:
        return BadInputError(self.path, "mapping", self.key(k), value, reason)

    def get(self, k: str, typ: type | tuple[type, ...], default: Any = None, choices: tuple | None = None) -> Any:
        if k not in self.data:
            return default
        v = self.data[k]
        if not isinstance(v, typ) or (typ is int and isinstance(v, bool)):
            names = typ.__name__ if isinstance(typ, type) else " or ".join(t.__name__ for t in typ)
            raise self.err(k, v, f"must be {names}")
        if choices is not None and v not in choices:
            raise self.err(k, v, f"must be one of {', '.join(map(str, choices))}")
        return v

    def positive(self, k: str, default: int | None = None) -> int | None:
        v = self.get(k, int, default)
        if v is not None and v <= 0:
            raise self.err(k, v, "must be a positive integer")
        return v

    def table(self, k: str, allowed: tuple[str, ...] | None = None) -> _Keys | None:
        if k not in self.data:
            return None
        v = self.data[k]
        if not isinstance(v, Mapping):
            raise self.err(k, v, "must be a table")
        return _Keys(self.path, v, f"{self.prefix}{k}.", allowed or tuple(v))


def _time(keys: _Keys | None, default_tz: str, inherit: TimeSpec | None = None) -> TimeSpec:
    base = inherit or TimeSpec(timezone=default_tz)
    if keys is None:
        return base
    unit = keys.get("unit", str, base.unit, tuple(NS_PER))
    fmt = keys.get("format", str, base.format)
    date = keys.get("date", str, base.date)
    tz = keys.get("timezone", str, base.timezone)
    _check_timezone(keys, "timezone", tz)
    if date is not None and date != "file" and not re.fullmatch(r"\d{4}-\d{2}-\d{2}", date):
        raise keys.err("date", date, "must be YYYY-MM-DD, or \"file\" for the {date} in the file name")
    fields: tuple[tuple[str, int], ...] = ()
    if fmt is not None and fmt != "iso":
        fields = _digit_layout(keys, fmt)
        codes = {c for c, _ in fields}
        if "H" not in codes:
            raise keys.err("format", fmt, "a time layout needs at least %H")
        if not {"Y", "m", "d"} <= codes and {"Y", "m", "d"} & codes:
            raise keys.err("format", fmt, "a date in the layout needs all of %Y, %m and %d")
    return TimeSpec(unit=unit, format=fmt, date=date, timezone=tz, fields=fields)


def _digit_layout(keys: _Keys, fmt: str) -> tuple[tuple[str, int], ...]:
    out: list[tuple[str, int]] = []
    for m in re.finditer(r"%(\d?)([YmdHMSf])|(.)", fmt):
        if m.group(3) is not None:
            raise keys.err("format", fmt, "only digit layouts (%Y %m %d %H %M %S %<n>f) or 'iso' are supported")
        width, code = m.group(1), m.group(2)
        if code == "f":
            out.append(("f", int(width or 9)))
        elif width:
            raise keys.err("format", fmt, f"%{code} takes no width")
        else:
            out.append((code, _TIME_CODES[code]))
    if [c for c, _ in out if c == "f"] and out[-1][0] != "f":
        raise keys.err("format", fmt, "the fraction %<n>f must come last")
    return tuple(out)


def _check_timezone(keys: _Keys, k: str, tz: str) -> None:
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError):
        raise keys.err(k, tz, "unknown time zone (an IANA name such as Asia/Shanghai)") from None


_DURATION_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ns|us|ms|s)\s*$")


def _duration(keys: _Keys, k: str, text: str) -> int:
    """'500ms', '1s', '2.5 s' -> nanoseconds."""
    m = _DURATION_RE.match(text)
    if not m:
        raise keys.err(k, text, "a duration is a number and a unit: '500ms', '1s' (ns, us, ms, s)")
    return round(float(m.group(1)) * NS_PER[m.group(2)])


def _tod(keys: _Keys, k: str, text: str) -> int:
    m = _TOD_RE.match(text.strip())
    if not m or int(m.group(1)) > 24 or int(m.group(2)) > 59:
        raise keys.err(k, text, "a window is 'HH:MM-HH:MM' (local time)")
    return ((int(m.group(1)) * 60 + int(m.group(2))) * 60 + int(m.group(3) or 0)) * 1_000_000_000


def _sides(keys: _Keys | None) -> dict[str, int]:
    if keys is None:
        return {}
    out: dict[str, int] = {}
    for value, side in keys.data.items():
        if isinstance(side, bool) or not isinstance(side, (int, str)):
            raise keys.err(value, side, "a side is buy, sell or none (or 1, -1, 0)")
        code = SIDE_NAMES.get(side.strip().lower()) if isinstance(side, str) else side
        if code not in (-1, 0, 1):
            raise keys.err(value, side, "a side is buy, sell or none (or 1, -1, 0)")
        out[str(value)] = int(code)
    return out


def _file(keys: _Keys, role: str, columns_allowed: tuple[str, ...], required: tuple[str, ...], tz: str,
          mapping_time: TimeSpec) -> FileSpec:
    cols_keys = keys.table("columns", columns_allowed)
    if cols_keys is None:
        raise keys.err("columns", None, f"missing: name the source column of each of {', '.join(required)}")
    columns: dict[str, str] = {}
    for canon, src in cols_keys.data.items():
        if not isinstance(src, str) or not src:
            raise cols_keys.err(canon, src, "must be the name of a source column")
        columns[canon] = src
    for need in required:
        if need not in columns:
            raise cols_keys.err(need, None, "missing: this column is required")
    actions = {"events": (*tuple(k.name.lower() for k in Kind), "skip"), "orders": ORDER_ACTIONS,
               "trades": TRADE_ACTIONS}[role]
    kinds: dict[str, str] = {}
    kinds_keys = keys.table("kinds")
    if kinds_keys is not None:
        for value, kind in kinds_keys.data.items():
            if not isinstance(kind, str) or kind.lower() not in actions:
                raise kinds_keys.err(value, kind, f"must be one of {', '.join(actions)}")
            kinds[str(value)] = kind.lower()
    kind = keys.get("kind", str)
    if kind is not None and kind.lower() not in actions:
        raise keys.err("kind", kind, f"must be one of {', '.join(actions)}")
    if "kind" in columns and not kinds:
        raise keys.err("kinds", None, f"missing: map the values of column '{columns['kind']}' to {', '.join(actions)}")
    if "kind" not in columns and kind is None and role == "events":
        raise cols_keys.err("kind", None, "missing: name the kind column (with [kinds]) or give kind = \"trade\"")
    if role == "orders" and "kind" not in columns and kind is None:
        kind = "add"  # an order file without an action column lists new orders (SZSE)
    if role == "trades" and "kind" not in columns and kind is None:
        kind = "trade"
    sides = _sides(keys.table("sides"))
    side_col = "aggressor" if role == "trades" else "side"
    if side_col in columns and not sides:
        raise keys.err("sides", None, f"missing: map the values of column '{columns[side_col]}' to buy / sell / none")
    names = keys.get("column_names", list)
    if names is not None and not all(isinstance(n, str) for n in names):
        raise keys.err("column_names", names, "must be a list of column names")
    time_keys = keys.table("time", ("unit", "format", "date", "timezone"))
    return FileSpec(
        role=role, columns=columns, pattern=keys.get("file", str), kinds=kinds, kind=kind.lower() if kind else None,
        sides=sides, column_names=tuple(names) if names else None, delimiter=keys.get("delimiter", str, ","),
        price_factor=keys.positive("price_factor"), size_factor=keys.positive("size_factor"),
        float_decimals=keys.get("float_decimals", int), time=_time(time_keys, tz, mapping_time) if time_keys else None,
    )


_FILE_KEYS = ("file", "columns", "kinds", "kind", "sides", "column_names", "delimiter", "price_factor", "size_factor",
              "float_decimals", "time")


def _build(data: dict[str, Any], path: str) -> FeedMapping:
    top = _Keys(path, data, "", ("layout", "instrument", "time", "sessions", "events", "orders", "trades"))
    layout = top.get("layout", str, "events", LAYOUTS)
    ins = top.table("instrument", ("symbol", "venue", "price_scale", "size_scale", "tick_size", "currency",
                                   "timezone"))
    if ins is None:
        raise top.err("instrument", None, "missing: give [instrument] with venue and price_scale")
    instrument: dict[str, Any] = {
        "symbol": ins.get("symbol", str), "venue": ins.get("venue", str), "price_scale": ins.positive("price_scale"),
        "size_scale": ins.positive("size_scale", 1), "tick_size": ins.positive("tick_size"),
        "currency": ins.get("currency", str, "USD"), "timezone": ins.get("timezone", str, "UTC"),
    }
    for need in ("venue", "price_scale"):
        if not instrument[need]:
            raise ins.err(need, None, "missing: this key is required")
    _check_timezone(ins, "timezone", instrument["timezone"])
    time = _time(top.table("time", ("unit", "format", "date", "timezone")), instrument["timezone"])
    continuous: list[tuple[int, int]] = []
    outside = "mark"
    stale_after = None
    ses = top.table("sessions", ("continuous", "outside", "stale_after"))
    if ses is not None:
        windows = ses.get("continuous", list, [])
        for w in windows:
            if not isinstance(w, str) or w.count("-") != 1:
                raise ses.err("continuous", w, "a window is 'HH:MM-HH:MM' (local time)")
            a, b = (_tod(ses, "continuous", t) for t in w.split("-"))
            if b <= a:
                raise ses.err("continuous", w, "a window must end after it starts")
            continuous.append((a, b))
        outside = ses.get("outside", str, "drop" if continuous else "mark", OUTSIDE)
        text = ses.get("stale_after", str)
        if text is not None:
            stale_after = _duration(ses, "stale_after", text)
    kw: dict[str, Any] = {}
    if layout == "events":
        for other in ("orders", "trades"):
            if other in data:
                raise top.err(other, "...", "only with layout = \"orders+trades\"")
        ev = top.table("events", _FILE_KEYS)
        if ev is None:
            raise top.err("events", None, "missing: give [events] with its [events.columns]")
        kw["events"] = _file(ev, "events", EVENT_COLUMNS, ("ts", "price", "size"), instrument["timezone"], time)
    else:
        if "events" in data:
            raise top.err("events", "...", "only with layout = \"events\"")
        o = top.table("orders", (*_FILE_KEYS, "sizes", "leading_snapshot", "trailing_deletes"))
        t = top.table("trades", _FILE_KEYS)
        if o is None or t is None:
            raise top.err("orders" if o is None else "trades", None,
                          "missing: orders+trades needs [orders] and [trades]")
        kw["orders"] = _file(o, "orders", ORDER_COLUMNS, ("ts", "order_id", "side", "price", "size"),
                             instrument["timezone"], time)
        kw["trades"] = _file(t, "trades", TRADE_COLUMNS, ("ts", "buy_order_id", "sell_order_id", "price", "size"),
                             instrument["timezone"], time)
        kw["sizes"] = o.get("sizes", str, "full", SIZES)
        kw["leading_snapshot"] = o.get("leading_snapshot", bool, False)
        kw["trailing_deletes"] = o.get("trailing_deletes", str, "keep", ("keep", "drop"))
        if kw["sizes"] == "remaining" and "kind" not in kw["orders"].columns:
            raise o.err("columns.kind", None, "sizes = \"remaining\" needs the action column (add / change / delete)")
    return FeedMapping(path=path, layout=layout, instrument=instrument, time=time, continuous=tuple(continuous),
                       outside=outside, stale_after_ns=stale_after, **kw)
