"""Bitstamp order-level (L3) events: ``orders.csv`` captures, ``trades.csv`` and the raw 2015 feed log.

Bitstamp's live-orders feed reports each order's *remaining* volume: ``created`` (a new order), ``changed``
(its remaining volume or price changed) and ``deleted`` (it left the book: cancelled, or filled when the
remaining volume is 0). The reader keeps each order's remaining volume to turn that into canonical events:

* created -> ADD (size = volume). A created row with volume 0 is a market order (price placeholder 999999999):
  it never rests, so it and its later rows are dropped and counted (``notes["market_order_rows"]``).
* changed, volume fell by d -> EXECUTE of d at the row's price on the order's side. Bitstamp volumes only fall
  through fills (no partial cancels): in the 2026 capture 261 of the 263 decreases match a trade in trades.csv
  by order id and amount; the other 2 belong to market orders. Note the taker's own limit order is reported
  too (created at its limit, then reduced at each fill price), so each fill shows on both sides.
* changed, volume rose or the order is unknown (it rested before the file starts) -> MODIFY (new price/size).
* deleted with volume > 0 -> DELETE of that remaining volume (a cancel).
* deleted with volume 0 -> the last fill took the rest: EXECUTE of the remaining volume we tracked; if the order
  is unknown its size is unknown too, so the row is dropped and counted (``filled_deletes_unknown_size``).

Prices are USD with cents (``price_scale=100``), sizes BTC in satoshi (``size_scale=100_000_000``); both are
converted from the decimal text exactly (the 2026 file writes small volumes as ``2.6e-06``). The tick is the
gcd of the observed prices (1 cent in 2015, $1 in 2026) unless ``tick_size=`` is given.

Two ``orders.csv`` header variants exist. In the 2015 one (``exchange.timestamp``, volume in satoshi) the
exchange column is the order's *creation* second, not the event time, so ``ts`` is the local receive time. In the
2026 one (``exchange_timestamp``, volume in BTC) it is the event time in ms and becomes ``ts``. A 2026 capture
starts with a REST snapshot of the book (a block of ``created`` rows sharing one local and one exchange time,
written ahead of events that arrived while it was fetched): kept as ``snapshot=True`` ADDs (``snapshot="keep"``),
or dropped (``"drop"``). It ends with synthetic deletes of every resting order (a trailing block of ``deleted``
rows stamped with one time equal in both columns): not market events, always dropped and counted.

A capture can miss a delete: the order stays in the replayed book and later orders rest through it. Orders the
book stays crossed by for longer than ``stale_after_ms`` (1 s; ``None`` keeps them) are deleted where that is
found (:mod:`tradefm.book.stale`); the 2026 capture has two, which had crossed 92% of its book states.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import numpy as np

from ..book.stale import drop_stale
from ..events import ASK, BID, NO_ORDER, BadInputError, EventDay, Instrument, Kind, Problems
from .generic import (
    RowErrors,
    capture_edges,
    decimal_units,
    finish,
    first_line,
    gcd_tick,
    open_binary,
    read_csv_strings,
    report_invalid_rows,
    to_units,
    with_loc,
)

PRICE_SCALE = 100
SIZE_SCALE = 100_000_000
VENUE = "bitstamp"
HEADER_2015 = "id,timestamp,exchange.timestamp,price,volume,action,direction"
HEADER_2026 = "id,timestamp,exchange_timestamp,price,volume,action,direction"
HEADER_TRADES = "trade_id,timestamp,exchange_timestamp,price,amount,buy_order_id,sell_order_id,side"
_LOG_RE = re.compile(r"^\d{10,16} (order_created|order_changed|order_deleted|trade|order_book) \{")
_DIRECTIONS = {"bid": BID, "ask": ASK, "buy": BID, "sell": ASK}
_ACTIONS = ("created", "changed", "deleted")
MS = 1_000_000
STALE_AFTER_MS = 1000.0  # the feed's own crossings last under 0.6 s (2015 capture); a missed delete, minutes


def detect(path: Path) -> bool:
    """An orders.csv / trades.csv by its exact header, or a feed log by its first line."""
    line = first_line(Path(path)).lstrip("\ufeff")
    return line in (HEADER_2015, HEADER_2026, HEADER_TRADES) or bool(_LOG_RE.match(line))


def read(
    path: Path,
    *,
    skip_bad: bool = False,
    symbol: str = "BTCUSD",
    snapshot: str = "keep",
    tick_size: int | None = None,
    stale_after_ms: float | None = STALE_AFTER_MS,
    **_: object,
) -> Iterator[EventDay]:
    """Yield one EventDay per UTC date from an orders.csv(.gz/.xz), trades.csv or ``*.log(.xz)`` feed log."""
    path = Path(path)
    if snapshot not in ("keep", "drop"):
        raise ValueError("snapshot must be 'keep' or 'drop'")
    line = first_line(path).lstrip("\ufeff")
    if line == HEADER_TRADES:
        yield from _read_trades(path, skip_bad, symbol, tick_size)
        return
    if line in (HEADER_2015, HEADER_2026):
        days = _read_orders(path, skip_bad, symbol, snapshot, tick_size, line == HEADER_2026)
    elif _LOG_RE.match(line):
        days = _read_log(path, skip_bad, symbol, tick_size)
    else:
        raise BadInputError(str(path), "line 1", "header", line[:200], "not a Bitstamp orders/trades csv or feed log")
    for day in days:
        yield day if stale_after_ms is None else drop_stale(day, int(stale_after_ms * MS))


def _instrument(symbol: str, tick: int) -> Instrument:
    return Instrument(symbol=symbol, venue=VENUE, price_scale=PRICE_SCALE, tick_size=tick, size_scale=SIZE_SCALE)


class _Book:
    """Remaining volume per order: turns Bitstamp's 'remaining volume' rows into canonical events."""

    def __init__(self) -> None:
        self.orders: dict[int, list[int]] = {}  # id -> [remaining, side]
        self.market: dict[int, str] = {}  # orders that never rest (market orders, unpriced) -> counter name
        self.counts: dict[str, int] = {}
        self.out: dict[str, list] = {k: [] for k in ("ts", "ts_recv", "kind", "side", "price", "size", "order_id",
                                                     "snapshot", "src_type", "loc")}

    def _count(self, key: str) -> None:
        self.counts[key] = self.counts.get(key, 0) + 1

    def _emit(self, loc: int, ts: int, recv: int, kind: Kind, side: int, price: int, size: int, oid: int,
              snap: bool, src: str) -> None:
        o = self.out
        o["ts"].append(ts)
        o["ts_recv"].append(recv)
        o["kind"].append(int(kind))
        o["side"].append(side)
        o["price"].append(price)
        o["size"].append(size)
        o["order_id"].append(oid)
        o["snapshot"].append(snap)
        o["src_type"].append(src)
        o["loc"].append(loc)

    def row(self, loc: int, ts: int, recv: int, oid: int, price: int, vol: int, action: str, side: int,
            snap: bool = False, src: str | None = None) -> None:
        src = src or action
        if action == "created":
            if price <= 0 and snap:
                self.market[oid] = "snapshot_zero_price_rows"  # a resting bid below one cent, written as 0.0
                self._count("snapshot_zero_price_rows")
                return
            if vol == 0 or price <= 0:
                self.market[oid] = "market_order_rows"  # market buy: volume 0 at 999999999; market sell: price 0
                self._count("market_order_rows")
                return
            if oid in self.orders:
                self._count("created_twice")
            self.orders[oid] = [vol, side]
            self._emit(loc, ts, recv, Kind.ADD, side, price, vol, oid, snap, src)
            return
        if oid in self.market:
            key = self.market[oid]
            self._count(key)
            if action == "deleted":
                del self.market[oid]
            return
        prev = self.orders.get(oid)
        if action == "changed":
            if prev is None:
                self._count("changed_unknown_order")
                self.orders[oid] = [vol, side]
                self._emit(loc, ts, recv, Kind.MODIFY, side, price, vol, oid, snap, src)
                return
            fell = prev[0] - vol
            prev[0] = vol
            if fell > 0:
                self._emit(loc, ts, recv, Kind.EXECUTE, prev[1], price, fell, oid, snap, src)
            else:
                self._count("changed_price_only" if fell == 0 else "changed_volume_increases")
                self._emit(loc, ts, recv, Kind.MODIFY, prev[1], price, vol, oid, snap, src)
            return
        # deleted
        self.orders.pop(oid, None)
        if vol > 0:
            if prev is not None and prev[0] != vol:
                self._count("delete_volume_differs_from_tracked")
            self._emit(loc, ts, recv, Kind.DELETE, side, price, vol, oid, snap, src)
        elif prev is not None and prev[0] > 0:
            self._count("filled_deletes")
            self._emit(loc, ts, recv, Kind.EXECUTE, prev[1], price, prev[0], oid, snap, src)
        elif prev is not None:
            self._count("deletes_after_full_fill")  # a changed row already took the volume to 0
        else:
            self._count("filled_deletes_unknown_size")


def _read_orders(
    path: Path, skip_bad: bool, symbol: str, snapshot: str, tick_size: int | None, v2026: bool
) -> Iterator[EventDay]:
    problems = Problems(str(path), skip_bad)
    csv = read_csv_strings(path)
    report_invalid_rows(csv, path, problems)
    t = csv.table
    n = t.num_rows
    lines = csv.lines
    errors = RowErrors(n)
    exch_name = "exchange_timestamp" if v2026 else "exchange.timestamp"
    ids_text = t.column("id").to_pylist()
    oid, bad, why = decimal_units(t.column("id"), 1)
    errors.add_reasons(bad, "id", ids_text, why)
    local, bad, why = decimal_units(t.column("timestamp"), 1)
    errors.add_reasons(bad, "timestamp", t.column("timestamp").to_pylist(), why)
    exch, bad, why = decimal_units(t.column(exch_name), 1)
    errors.add_reasons(bad, exch_name, t.column(exch_name).to_pylist(), why)
    price_text = t.column("price").to_pylist()
    price, bad, why = decimal_units(t.column("price"), PRICE_SCALE)
    errors.add_reasons(bad, "price", price_text, why)
    errors.add_mask(~bad & (price < 0), "price", price_text, "price must not be negative")
    vol_text = t.column("volume").to_pylist()
    vol, bad, why = decimal_units(t.column("volume"), SIZE_SCALE if v2026 else 1)
    errors.add_reasons(bad, "volume", vol_text, why)
    errors.add_mask(~bad & (vol < 0), "volume", vol_text, "volume must not be negative")
    action = t.column("action").to_pylist()
    errors.add_mask(np.array([a not in _ACTIONS for a in action], dtype=bool), "action", action,
                    "unknown action (created/changed/deleted)")
    direction = t.column("direction").to_pylist()
    side = np.array([_DIRECTIONS.get(d, 0) for d in direction], dtype=np.int8)
    errors.add_mask(side == 0, "direction", direction, "unknown direction (bid/ask)")

    def where(i: int) -> str:
        return f"line {int(lines[i])}"

    keep = errors.report(problems, path, where)
    lead, trail = (capture_edges([a == "created" for a in action], [a == "deleted" for a in action], local, exch)
                   if v2026 else (0, 0))
    notes: dict[str, object] = {"reader": "bitstamp.orders", "rows": n, "header": "2026" if v2026 else "2015"}
    if v2026:
        notes["snapshot_rows"] = lead
        notes["snapshot"] = "kept as snapshot=True ADDs" if snapshot == "keep" else "dropped"
        notes["synthetic_deletes_dropped"] = trail
    ts = exch if v2026 else local  # 2015: the exchange column is the order's creation second
    book = _Book()
    for i in np.flatnonzero(keep[: n - trail] if trail else keep):
        snap = bool(i < lead)
        if snap and snapshot == "drop":
            continue
        book.row(int(i), int(ts[i]) * MS, int(local[i]) * MS, int(oid[i]), int(price[i]), int(vol[i]),
                 action[i], int(side[i]), snap)
    notes.update(book.counts)
    yield from _finish(book, path, symbol, tick_size, where, problems, notes)


def _finish(book: _Book, path: Path, symbol: str, tick_size: int | None, where, problems: Problems,
            notes: dict[str, object]) -> Iterator[EventDay]:
    o = book.out
    cols = {k: o[k] for k in ("ts", "ts_recv", "kind", "side", "price", "size", "order_id", "snapshot", "src_type")}
    if "trade_id" in o:
        cols["trade_id"] = o["trade_id"]
    table = with_loc(cols, o["loc"])
    tick = int(tick_size) if tick_size else gcd_tick(np.asarray(o["price"], dtype=np.int64))
    yield from finish(table, path=path, instrument=_instrument(symbol, tick), where=where, problems=problems,
                      notes=notes)


def _read_trades(path: Path, skip_bad: bool, symbol: str, tick_size: int | None) -> Iterator[EventDay]:
    """trades.csv: one TRADE per row; ``side`` is the aggressor there, so the passive side is the other one."""
    problems = Problems(str(path), skip_bad)
    csv = read_csv_strings(path)
    report_invalid_rows(csv, path, problems)
    t, lines = csv.table, csv.lines
    n = t.num_rows
    errors = RowErrors(n)
    parsed = {}
    for name, factor in (("trade_id", 1), ("timestamp", 1), ("exchange_timestamp", 1), ("price", PRICE_SCALE),
                         ("amount", SIZE_SCALE)):
        values, bad, why = decimal_units(t.column(name), factor)
        errors.add_reasons(bad, name, t.column(name).to_pylist(), why)
        parsed[name] = values
    aggressor = t.column("side").to_pylist()
    passive = np.array([{"buy": ASK, "sell": BID}.get(s, 0) for s in aggressor], dtype=np.int8)
    errors.add_mask(passive == 0, "side", aggressor, "unknown side (buy/sell)")

    def where(i: int) -> str:
        return f"line {int(lines[i])}"

    keep = errors.report(problems, path, where)
    book = _Book()
    o = book.out
    o["trade_id"] = []
    for i in np.flatnonzero(keep):
        book._emit(int(i), int(parsed["exchange_timestamp"][i]) * MS, int(parsed["timestamp"][i]) * MS, Kind.TRADE,
                   int(passive[i]), int(parsed["price"][i]), int(parsed["amount"][i]), NO_ORDER, False, "trade")
        o["trade_id"].append(int(parsed["trade_id"][i]))
    notes = {"reader": "bitstamp.trades", "rows": n}
    yield from _finish(book, path, symbol, tick_size, where, problems, notes)


def _read_log(path: Path, skip_bad: bool, symbol: str, tick_size: int | None) -> Iterator[EventDay]:
    """The raw feed log: ``<local ms> <event_type> <json>`` lines. Order events go through the same book logic as
    orders.csv; ``trade`` lines become TRADE (no side: the log does not say who aggressed); ``order_book``
    top-of-book snapshots are skipped and counted."""
    problems = Problems(str(path), skip_bad)
    book = _Book()
    o = book.out
    o["trade_id"] = []
    lines: list[int] = []
    skipped = {"order_book": 0}
    last_ts = None
    with open_binary(path) as f:
        for lineno, raw in enumerate(f, start=1):
            text = raw.decode("utf-8", errors="replace").rstrip("\r\n")
            if not text.strip():
                continue
            where = f"line {lineno}"
            try:
                ev = _parse_log_line(path, where, text)
            except BadInputError as e:
                problems.report(e)
                continue
            if ev is None:
                skipped["order_book"] += 1
                continue
            kind, ts, fields = ev
            if last_ts is not None and ts < last_ts:
                problems.report(BadInputError(str(path), where, "timestamp", ts, "time goes backwards"))
                continue
            last_ts = ts
            loc = len(lines)
            before = len(o["ts"])
            if kind == "trade":
                book._emit(loc, ts * MS, ts * MS, Kind.TRADE, 0, fields["price"], fields["size"], NO_ORDER, False,
                           "trade")
            else:
                book.row(loc, ts * MS, ts * MS, fields["id"], fields["price"], fields["size"], kind, fields["side"],
                         src=f"order_{kind}")
            o["trade_id"].extend([fields["trade_id"] if kind == "trade" else None] * (len(o["ts"]) - before))
            lines.append(lineno)
    notes: dict[str, object] = {"reader": "bitstamp.log", "lines": len(lines), "order_book_lines_skipped":
                                skipped["order_book"]}
    notes.update(book.counts)
    yield from _finish(book, path, symbol, tick_size, lambda i: f"line {lines[i]}", problems, notes)


def _parse_log_line(path: Path, where: str, text: str) -> tuple[str, int, dict[str, int]] | None:
    parts = text.split(" ", 2)
    if len(parts) != 3:
        raise BadInputError(str(path), where, "line", text[:200], "expected '<ms> <event_type> <json>'")
    ts_text, etype, body = parts
    try:
        ts = to_units(ts_text, 1)
    except ValueError as e:
        raise BadInputError(str(path), where, "timestamp", ts_text, str(e)) from None
    if etype == "order_book":
        return None
    if etype not in ("order_created", "order_changed", "order_deleted", "trade"):
        raise BadInputError(str(path), where, "event_type", etype, "unknown event type")
    try:
        msg = json.loads(body, parse_float=Decimal)
    except json.JSONDecodeError as e:
        raise BadInputError(str(path), where, "json", body[:200], f"invalid JSON: {e.msg}") from None
    if not isinstance(msg, dict):
        raise BadInputError(str(path), where, "json", body[:200], "expected a JSON object")
    fields: dict[str, int] = {}
    is_trade = etype == "trade"
    # the log writes trade price/amount as JSON floats (e.g. 1.7885566900000001): round those to the unit
    for name, key, factor in (("price", "price", PRICE_SCALE), ("size", "amount", SIZE_SCALE)):
        if key not in msg:
            raise BadInputError(str(path), where, key, None, "missing field")
        try:
            fields[name] = to_units(msg[key], factor, rounding=is_trade)
        except ValueError as e:
            raise BadInputError(str(path), where, key, msg[key], str(e)) from None
    if fields["price"] <= 0:
        raise BadInputError(str(path), where, "price", msg["price"], "price must be positive")
    if fields["size"] < 0:
        raise BadInputError(str(path), where, "amount", msg["amount"], "amount must not be negative")
    if "id" not in msg or not isinstance(msg["id"], int):
        raise BadInputError(str(path), where, "id", msg.get("id"), "missing or non-integer id")
    if is_trade:
        if fields["size"] <= 0:
            raise BadInputError(str(path), where, "amount", msg["amount"], "trade amount must be positive")
        fields["trade_id"] = msg["id"]
        return "trade", ts, fields
    fields["id"] = msg["id"]
    side = {0: BID, 1: ASK}.get(msg.get("order_type"), 0)  # type: ignore[arg-type]
    if side == 0:
        raise BadInputError(str(path), where, "order_type", msg.get("order_type"), "unknown order type (0 bid, 1 ask)")
    fields["side"] = side
    return etype.removeprefix("order_"), ts, fields
