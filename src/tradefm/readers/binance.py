"""Binance trades from three recorders: raw websocket captures, freqtrade aggTrades and nautilus parquet.

Binance publishes no order-level feed, so every source becomes TRADE events (``order_id`` 0). ``side`` is the
passive (resting) side: "buyer is maker" means a resting buy was hit by a seller, so ``side = BID``; otherwise
the buyer aggressed and the resting order was a sell (``ASK``).

* Websocket captures (hftbacktest, ``<local_recv_ns> <json>`` lines, gzip): only ``<symbol>@trade`` stream
  messages are read: ``ts`` = ``T`` (exchange trade time, ms), ``ts_recv`` = the local receive time (ns; it runs
  ~1.27 s *behind* the exchange clock in these files), ``trade_id`` = ``t``. Depth diffs, bookTicker and REST
  depth snapshots (lines without ``"stream"``) are counted in ``notes["ignored_messages"]``. USD-M futures trades
  whose ``X`` is not ``MARKET`` (insurance fund / ADL) are skipped and counted. The venue is ``binance-usdm`` for
  a capture under a ``usdm`` folder (or with the futures-only ``X`` field), else ``binance``. A directory reads
  all its captures together, so a symbol-day split over two files (the 2024-08-09 00:00 UTC rollover: the
  exchange clock is ahead, so the last trades of ``*_20240808.gz`` belong to 2024-08-09) comes out whole.
* freqtrade ``<PAIR>-trades.json(.gz)``: rows ``[ts_ms, id, null, side, price, amount, cost]``, ``side`` the taker.
* nautilus parquet: ``timestamp, trade_id, price, quantity, buyer_maker``. Its float columns carry arithmetic
  noise (0.000311 is stored as 0.00031099999999999997), so they are rounded to 8 decimals (Binance's finest
  precision) before the exact conversion; ``notes["float_values_rounded_to_8_decimals"]`` counts the noisy ones.

Prices and quantities are decimal text (JSON numbers are parsed as Decimal) and become integers exactly.
``price_scale`` defaults to 10**(most significant decimals seen for the symbol): 100 for spot BTCUSDT, 10 for
USD-M BTCUSDT; freqtrade uses 1e8 (its JSON floats keep no trailing zeros to go by). ``size_scale`` defaults to
1e8 (Binance quantities never have more than 8 decimals). Pass ``price_scale=`` / ``size_scale=`` to pin them
across days. The tick is the gcd of the observed prices unless ``tick_size=`` is given.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from ..events import ASK, BID, NO_ORDER, BadInputError, EventDay, Instrument, Kind, Problems
from .generic import (
    RowErrors,
    decimal_units,
    decimals_needed,
    finish,
    first_line,
    gcd_tick,
    head_bytes,
    open_binary,
    to_units,
    with_loc,
)

DEFAULT_SIZE_SCALE = 100_000_000
FREQTRADE_PRICE_SCALE = 100_000_000
MS = 1_000_000
_WS_RE = re.compile(r"^\d{16,20} \{")
_NAUTILUS_COLUMNS = {"timestamp", "trade_id", "price", "quantity", "buyer_maker"}


def _is_ws_capture(path: Path) -> bool:
    line = first_line(path)
    return bool(_WS_RE.match(line)) and ('"stream"' in line or '"lastUpdateId"' in line)


def _is_nautilus(path: Path) -> bool:
    if not path.name.lower().endswith(".parquet"):
        return False
    try:
        return set(pq.read_schema(path).names) >= _NAUTILUS_COLUMNS
    except (OSError, pa.ArrowException):
        return False


def _is_freqtrade(path: Path) -> bool:
    name = path.name.lower()
    if not (name.endswith("-trades.json") or name.endswith("-trades.json.gz")):
        return False
    return head_bytes(path, 2) in (b"[[", b"[]")


def detect(path: Path) -> bool:
    """A websocket capture (or a folder of them), a freqtrade trades JSON or a nautilus trades parquet."""
    path = Path(path)
    if path.is_dir():
        return any(_is_ws_capture(p) for p in sorted(path.glob("*.gz"))[:4])
    return _is_ws_capture(path) or _is_freqtrade(path) or _is_nautilus(path)


def read(
    path: Path,
    *,
    skip_bad: bool = False,
    symbol: str | None = None,
    venue: str | None = None,
    price_scale: int | None = None,
    size_scale: int | None = None,
    tick_size: int | None = None,
    **_: object,
) -> Iterator[EventDay]:
    """Yield one EventDay per symbol and UTC date."""
    path = Path(path)
    scales = {"price_scale": price_scale, "size_scale": size_scale, "tick_size": tick_size}
    if path.is_dir() or _is_ws_capture(path):
        yield from _read_ws(path, skip_bad, venue, scales)
    elif _is_freqtrade(path):
        yield from _read_freqtrade(path, skip_bad, symbol, venue, scales)
    elif _is_nautilus(path):
        yield from _read_nautilus(path, skip_bad, symbol, venue, scales)
    else:
        raise BadInputError(str(path), "line 1", "format", first_line(path)[:100],
                            "not a Binance websocket capture, freqtrade trades JSON or nautilus trades parquet")


class _Trades:
    """Trade rows of one symbol, with prices/sizes still as decimal text until the scale is known."""

    def __init__(self) -> None:
        self.ts: list[int] = []
        self.recv: list[int | None] = []
        self.tid: list[int] = []
        self.side: list[int] = []
        self.price: list[str] = []
        self.size: list[str] = []
        self.where: list[str] = []
        self.src: list[str] = []

    def add(self, ts: int, recv: int | None, tid: int, side: int, price: str, size: str, where: str,
            src: str) -> None:
        self.ts.append(ts)
        self.recv.append(recv)
        self.tid.append(tid)
        self.side.append(side)
        self.price.append(price)
        self.size.append(size)
        self.where.append(where)
        self.src.append(src)


def _days(
    path: Path,
    trades: _Trades,
    symbol: str,
    venue: str,
    scales: dict[str, int | None],
    default_price_scale: int | None,
    problems: Problems,
    notes: dict[str, object],
) -> Iterator[EventDay]:
    """Scale the decimal text exactly, validate, and split into UTC days."""
    n = len(trades.ts)
    if n == 0:
        return
    price_scale = scales["price_scale"] or default_price_scale or 10 ** min(decimals_needed(set(trades.price)), 8)
    size_scale = scales["size_scale"] or DEFAULT_SIZE_SCALE
    errors = RowErrors(n)
    price, bad, why = decimal_units(pa.array(trades.price, pa.string()), int(price_scale))
    errors.add_reasons(bad, "price", trades.price, why)
    errors.add_mask(~bad & (price <= 0), "price", trades.price, "price must be positive")
    size, bad, why = decimal_units(pa.array(trades.size, pa.string()), int(size_scale))
    errors.add_reasons(bad, "quantity", trades.size, why)

    def where(i: int) -> str:
        return trades.where[i]

    keep = errors.report(problems, path, where)
    locs = np.flatnonzero(keep)
    cols = {
        "ts": np.asarray(trades.ts, dtype=np.int64)[keep],
        "ts_recv": [trades.recv[i] for i in locs],
        "kind": np.full(len(locs), int(Kind.TRADE), dtype=np.int8),
        "side": np.asarray(trades.side, dtype=np.int8)[keep],
        "price": price[keep],
        "size": size[keep],
        "order_id": np.full(len(locs), NO_ORDER, dtype=np.int64),
        "snapshot": np.zeros(len(locs), dtype=bool),
        "trade_id": np.asarray(trades.tid, dtype=np.int64)[keep],
        "src_type": [trades.src[i] for i in locs],
    }
    table = with_loc(cols, locs)
    tick = int(scales["tick_size"] or gcd_tick(cols["price"]))
    instrument = Instrument(symbol=symbol, venue=venue, price_scale=int(price_scale), tick_size=tick,
                            size_scale=int(size_scale), currency=_quote(symbol))
    yield from finish(table, path=path, instrument=instrument, where=where, problems=problems, notes=notes)


def _quote(symbol: str) -> str:
    for q in ("USDT", "USDC", "FDUSD", "BUSD", "TUSD", "USD", "BTC", "ETH", "BNB", "EUR"):
        if symbol.endswith(q) and len(symbol) > len(q):
            return q
    return "USD"


# ---------------------------------------------------------------------------------------------- websocket captures


def _read_ws(path: Path, skip_bad: bool, venue_opt: str | None, scales: dict[str, int | None]) -> Iterator[EventDay]:
    files = sorted(p for p in path.glob("*.gz") if _is_ws_capture(p)) if path.is_dir() else [path]
    if not files:
        raise BadInputError(str(path), "directory", "files", None, "no websocket capture files (*.gz)")
    problems = Problems(str(path), skip_bad)
    by_symbol: dict[tuple[str, str], _Trades] = {}
    seen: dict[tuple[str, str], set[int]] = {}
    ignored: dict[str, int] = {}
    skipped = {"non_market_trades_skipped": 0, "duplicate_trades_dropped": 0}
    for f in files:
        usdm_dir = "usdm" in (p.lower() for p in f.parts[:-1])
        prefix = f"{f.name}: " if path.is_dir() else ""
        with open_binary(f) as fh:
            for lineno, raw in enumerate(fh, start=1):
                where = f"{prefix}line {lineno}"
                text = raw.decode("utf-8", errors="replace").rstrip("\r\n")
                if not text.strip():
                    continue
                recv_text, _, body = text.partition(" ")
                try:
                    recv = to_units(recv_text, 1)
                except ValueError as e:
                    problems.report(BadInputError(str(f), f"line {lineno}", "local_recv_ns", recv_text[:40], str(e)))
                    continue
                if not body.startswith('{"stream":"'):
                    key = "rest_snapshot" if '"lastUpdateId"' in body[:40] else "other"
                    ignored[key] = ignored.get(key, 0) + 1
                    continue
                stream = body[11 : body.find('"', 11)]
                channel = stream.partition("@")[2]
                if channel != "trade":
                    ignored[channel] = ignored.get(channel, 0) + 1
                    continue
                try:
                    msg = _ws_trade(f, lineno, body)
                except BadInputError as e:
                    problems.report(e)
                    continue
                sym, tid, ts, price, qty, maker, xtype = msg
                if xtype is not None and xtype != "MARKET":
                    skipped["non_market_trades_skipped"] += 1
                    continue
                venue = venue_opt or ("binance-usdm" if usdm_dir or xtype is not None else "binance")
                key = (venue, sym)
                ids = seen.setdefault(key, set())
                if tid in ids:
                    skipped["duplicate_trades_dropped"] += 1
                    continue
                ids.add(tid)
                by_symbol.setdefault(key, _Trades()).add(
                    ts, recv, tid, BID if maker else ASK, price, qty, where, "trade"
                )
    for (venue, sym), trades in by_symbol.items():
        notes: dict[str, object] = {
            "reader": "binance.ws_capture",
            "files": [f.name for f in files],
            "trades": len(trades.ts),
            "ignored_messages": dict(sorted(ignored.items())),
            **skipped,
        }
        yield from _days(path, trades, sym, venue, scales, None, problems, notes)


def _ws_trade(f: Path, lineno: int, body: str) -> tuple[str, int, int, str, str, bool, str | None]:
    where = f"line {lineno}"
    try:
        msg = json.loads(body, parse_float=Decimal)
        data = msg["data"]
    except (json.JSONDecodeError, KeyError, TypeError) as e:
        raise BadInputError(str(f), where, "json", body[:200], f"invalid trade message: {e}") from None
    for name in ("s", "t", "p", "q", "T", "m"):
        if name not in data:
            raise BadInputError(str(f), where, name, None, "missing field in trade message")
    if not isinstance(data["t"], int):
        raise BadInputError(str(f), where, "t", data["t"], "trade id must be an integer")
    if not isinstance(data["T"], int) or data["T"] <= 0:
        raise BadInputError(str(f), where, "T", data["T"], "trade time must be a positive integer (ms)")
    if not isinstance(data["m"], bool):
        raise BadInputError(str(f), where, "m", data["m"], "buyer-is-maker must be true/false")
    for name in ("p", "q"):
        if not isinstance(data[name], str):
            raise BadInputError(str(f), where, name, data[name], "expected decimal text")
    x = data.get("X")
    return str(data["s"]).upper(), data["t"], data["T"] * MS, data["p"], data["q"], data["m"], x


# ---------------------------------------------------------------------------------------------- freqtrade


def _pair_symbol(path: Path, suffix: str) -> str:
    stem = path.name
    for s in (suffix + ".gz", suffix):
        if stem.lower().endswith(s):
            stem = stem[: -len(s)]
            break
    return stem.replace("_", "").replace("/", "").replace("-", "").upper()


def _read_freqtrade(path: Path, skip_bad: bool, symbol: str | None, venue: str | None,
                    scales: dict[str, int | None]) -> Iterator[EventDay]:
    """freqtrade rows [ts_ms, id, null, side, price, amount, cost]; ``side`` is the taker's."""
    problems = Problems(str(path), skip_bad)
    with open_binary(path) as f:
        try:
            rows = json.load(f, parse_float=Decimal)
        except json.JSONDecodeError as e:
            raise BadInputError(str(path), f"line {e.lineno} column {e.colno}", "json", e.msg, "invalid JSON") from None
    if not isinstance(rows, list):
        raise BadInputError(str(path), "record 0", "json", type(rows).__name__, "expected a list of trade rows")
    trades = _Trades()
    for i, row in enumerate(rows, start=1):
        where = f"record {i}"
        try:
            if not isinstance(row, list) or len(row) != 7:
                raise BadInputError(str(path), where, "row", str(row)[:100], "expected 7 fields")
            ts, tid, _, taker, price, amount, _ = row
            if not isinstance(ts, int) or ts <= 0:
                raise BadInputError(str(path), where, "timestamp", ts, "expected positive integer ms")
            try:
                trade_id = to_units(tid, 1)
            except ValueError as e:
                raise BadInputError(str(path), where, "id", tid, str(e)) from None
            if taker not in ("buy", "sell"):
                raise BadInputError(str(path), where, "side", taker, "unknown side (buy/sell)")
            for name, v in (("price", price), ("amount", amount)):
                if isinstance(v, bool) or not isinstance(v, int | Decimal | str):
                    raise BadInputError(str(path), where, name, v, "not a number")
        except BadInputError as e:
            problems.report(e)
            continue
        trades.add(ts * MS, None, trade_id, ASK if taker == "buy" else BID, str(price), str(amount), where,
                   "aggTrade")
    notes = {"reader": "binance.freqtrade", "records": len(rows)}
    sym = symbol or _pair_symbol(path, "-trades.json")
    yield from _days(path, trades, sym, venue or "binance", scales, FREQTRADE_PRICE_SCALE, problems, notes)


# ---------------------------------------------------------------------------------------------- nautilus parquet


def _read_nautilus(path: Path, skip_bad: bool, symbol: str | None, venue: str | None,
                   scales: dict[str, int | None]) -> Iterator[EventDay]:
    problems = Problems(str(path), skip_bad)
    t = pq.read_table(path, columns=sorted(_NAUTILUS_COLUMNS))
    n = t.num_rows
    ts_col = t.column("timestamp")
    if pa.types.is_timestamp(ts_col.type):
        ts = ts_col.cast(pa.timestamp("ns", tz=ts_col.type.tz)).cast(pa.int64()).to_numpy(zero_copy_only=False)
    else:
        raise BadInputError(str(path), "schema", "timestamp", str(ts_col.type), "expected a timestamp column")
    tid = t.column("trade_id").to_pylist()
    price = t.column("price").to_pylist()
    qty = t.column("quantity").to_pylist()
    maker = t.column("buyer_maker").to_pylist()
    trades = _Trades()
    errors = RowErrors(n)
    for i in range(n):
        m = str(maker[i]).strip().lower()
        if m not in ("true", "false"):
            errors.add(i, "buyer_maker", maker[i], "expected True/False")
            continue
        if tid[i] is None or price[i] is None or qty[i] is None:
            errors.add(i, "price" if price[i] is None else "quantity" if qty[i] is None else "trade_id", None,
                       "missing value")
            continue
    keep = errors.report(problems, path, lambda i: f"record {i + 1}")
    rounded = 0
    for i in np.flatnonzero(keep):
        p, q = round(float(price[i]), 8), round(float(qty[i]), 8)
        rounded += (p != price[i]) + (q != qty[i])
        trades.add(int(ts[i]), None, int(tid[i]), BID if str(maker[i]).strip().lower() == "true" else ASK,
                   repr(p), repr(q), f"record {i + 1}", "trade")
    notes = {"reader": "binance.nautilus", "records": n, "float_values_rounded_to_8_decimals": int(rounded)}
    sym = symbol or _pair_symbol(path, "-trades.parquet")
    yield from _days(path, trades, sym, venue or "binance", scales, None, problems, notes)
