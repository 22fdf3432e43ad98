"""Feeds split into an orders file and a trades file, each trade naming its buy and its sell order.

Canonically an execution is an ``EXECUTE`` of the order that was resting (the passive side), and a marketable
order appears only after its trades, with what is left of it (the CME / Databento convention). Vendors write the
two files in three ways, named by the mapping's ``orders.sizes``:

* ``full`` (SZSE): the order row comes first, with the whole order; its trades follow. The row is held back until
  its last trade as aggressor, then what is left rests as an ``ADD``.
* ``after_trades`` (SSE): the trades come first; the order row follows only if something is left, with that
  remainder. The row is an ``ADD`` as it is.
* ``remaining`` (Bitstamp): every order row carries the order's remaining size (created / changed / deleted);
  its decreases are the fills, the trades file says who was the aggressor. The aggressor's own decreases are the
  other half of fills already taken from the resting orders, so they make no event.

Who was resting: the trades file's aggressor column when there is one; otherwise the order already seen when the
trade happened (of two, the later one is the aggressor). A trade with no aggressor (both orders resting, or
outside continuous trading) is an auction match: a ``CROSS`` print, then an ``EXECUTE`` of each of its two orders.
Outside the mapping's continuous sessions, ``outside = "drop"`` keeps the events out and writes the book they leave
at the first continuous event as snapshot ``ADD``s; ``"mark"`` keeps them. Everything not applied is counted in
``notes``.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from ..events import ASK, BID, NO_ORDER, EventDay, Kind, Problems
from .generic import (
    Parsed,
    by_symbol,
    capture_edges,
    file_date,
    finish,
    in_sessions,
    instrument_for,
    parse_file,
    with_loc,
)
from .mapping import FeedMapping

_OUT = ("ts", "ts_recv", "kind", "side", "price", "size", "order_id", "snapshot", "trade_id", "src_type")


class _Events:
    """Output columns in emission order, each event with the source place it came from."""

    def __init__(self) -> None:
        self.c: dict[str, list] = {k: [] for k in _OUT}
        self.places: list[str] = []
        self.counts: dict[str, int] = {}
        self.quiet = False  # outside continuous trading with outside = "drop": state moves, nothing is written

    def count(self, key: str, n: int = 1) -> None:
        self.counts[key] = self.counts.get(key, 0) + n

    def emit(self, place: str, ts: int, recv: int | None, kind: Kind, side: int, price: int, size: int, oid: int,
             src: str, trade_id: int | None = None, snapshot: bool = False) -> None:
        if self.quiet:
            return
        c = self.c
        for k, v in (("ts", ts), ("ts_recv", recv), ("kind", int(kind)), ("side", side), ("price", price),
                     ("size", size), ("order_id", oid), ("snapshot", snapshot), ("trade_id", trade_id),
                     ("src_type", src)):
            c[k].append(v)
        self.places.append(place)


def read_pair(orders_path: Path, trades_path: Path, spec: FeedMapping, name_symbol: str | None,
              name_date: str | None, skip_bad: bool) -> Iterator[EventDay]:
    """Yield the canonical symbol-days of one orders file and its trades file."""
    assert spec.orders is not None and spec.trades is not None
    problems = Problems(str(orders_path.parent), skip_bad)
    o = parse_file(orders_path, spec.orders, spec, problems,
                   file_date(spec.orders.time or spec.time, name_date, orders_path, spec))
    t = parse_file(trades_path, spec.trades, spec, problems,
                   file_date(spec.trades.time or spec.time, name_date, trades_path, spec))
    for symbol, (orows, trows) in by_symbol(spec, name_symbol, [o, t]):
        ev = _Events()
        if spec.sizes == "remaining":
            _remaining(o, orows, t, trows, spec, ev)
        else:
            _merged(o, orows, t, trows, spec, ev)
        notes: dict[str, object] = {"reader": f"generic.orders+trades ({spec.sizes})", "mapping": spec.path,
                                    "order_rows": o.rows, "trade_rows": t.rows, **ev.counts}
        for p, name in ((o, "order"), (t, "trade")):
            if p.skipped:
                notes[f"{name}_rows_skipped_by_kind"] = dict(p.skipped)
        cols = {k: ev.c[k] for k in _OUT}
        if not any(v is not None for v in cols["ts_recv"]):
            del cols["ts_recv"]
        table = with_loc(cols, np.arange(len(ev.places)))
        ins = instrument_for(spec, symbol, np.asarray(ev.c["price"], dtype=np.int64))
        places = ev.places
        yield from finish(table, path=orders_path.parent, instrument=ins, where=lambda i, pl=places: pl[i],
                          problems=problems, notes=notes, sources=[str(orders_path), str(trades_path)])


def _col(p: Parsed, name: str, rows: np.ndarray, default: object = None) -> list:
    if name not in p.cols:
        return [default] * len(rows)
    return p.cols[name][rows].tolist()


def _aggressors(t: Parsed, trows: np.ndarray, spec: FeedMapping, order_pos: dict[int, int],
                trade_pos: list[int] | None) -> list[int | None]:
    """Per trade: +1 the buyer aggressed, -1 the seller, 0 no aggressor (an auction match), None unknown."""
    buy, sell = _col(t, "buy_order_id", trows), _col(t, "sell_order_id", trows)
    inside = in_sessions(t.cols["ts"][trows], spec)
    if "aggressor" in t.cols:
        return [int(a) for a in t.cols["aggressor"][trows]]
    out: list[int | None] = []
    first = order_pos
    for i, (b, s) in enumerate(zip(buy, sell, strict=True)):
        if not inside[i]:
            out.append(0)
            continue
        at = trade_pos[i] if trade_pos is not None else None
        pb, ps = first.get(b), first.get(s)
        if at is not None:  # the order already seen when the trade happened is the resting one
            pb = pb if pb is not None and pb < at else None
            ps = ps if ps is not None and ps < at else None
        if pb is None and ps is None:
            out.append(None)
        elif pb is None or ps is None:
            out.append(1 if pb is None else -1)  # the order not resting yet is the aggressor
        else:
            out.append(1 if pb > ps else -1)  # both resting: the later one came in and took
    return out


def _merged(o: Parsed, orows: np.ndarray, t: Parsed, trows: np.ndarray, spec: FeedMapping, ev: _Events) -> None:
    """``full`` and ``after_trades``: order rows and trade rows as one stream, by sequence number or time."""
    n_o, n_t = len(orows), len(trows)
    src = np.concatenate([np.zeros(n_o, dtype=np.int8), np.ones(n_t, dtype=np.int8)])
    idx = np.concatenate([orows, trows])
    ts = np.concatenate([o.cols["ts"][orows], t.cols["ts"][trows]])
    if "seq" in o.cols and "seq" in t.cols:
        order = np.lexsort((src, np.concatenate([o.cols["seq"][orows], t.cols["seq"][trows]])))
    else:
        rank = src if spec.sizes == "full" else 1 - src  # SZSE: the order before its trades; SSE: after them
        order = np.lexsort((np.arange(len(src)), rank, ts))
    src, idx = src[order], idx[order]
    pos_of_order: dict[int, int] = {}
    trade_pos: list[int] = [0] * n_t
    tpos = {int(r): k for k, r in enumerate(trows)}
    for pos, (s, i) in enumerate(zip(src.tolist(), idx.tolist(), strict=True)):
        if s == 0:
            pos_of_order.setdefault(int(o.cols["order_id"][i]), pos)
        else:
            trade_pos[tpos[i]] = pos
    aggr = _aggressors(t, trows, spec, pos_of_order, trade_pos)
    t_kind = _col(t, "kind", trows, "trade")
    t_buy, t_sell = _col(t, "buy_order_id", trows), _col(t, "sell_order_id", trows)
    agg_left: dict[int, int] = {}
    for k, a in enumerate(aggr):
        if t_kind[k] == "trade" and a in (1, -1):
            oid = t_buy[k] if a == 1 else t_sell[k]
            agg_left[oid] = agg_left.get(oid, 0) + 1
    agg_done: dict[int, int] = {}
    last_fill: dict[int, int] = {}
    book: dict[int, list] = {}  # id -> [side, price, remaining, entry ts, recv, place, src]
    pending: dict[int, list] = {}  # held-back marketable orders: [side, price, size, ts, recv, place, src]
    never: set[int] = set()  # orders that could not rest (no price to rest at)
    inside = in_sessions(ts[order], spec)
    drop_outside = bool(spec.continuous) and spec.outside == "drop"
    live = False
    oc, tc = o.cols, t.cols
    o_recv, t_recv = oc.get("ts_recv"), tc.get("ts_recv")
    t_tid = tc.get("trade_id")

    def rest(oid: int, side: int, price: int, size: int, now: int, recv: int | None, place: str, s: str) -> None:
        if size <= 0:
            ev.count("orders_filled_on_entry")
            return
        if price <= 0:  # a market or best-price order: it rests where it last traded, else at its side's best
            own = [o[1] for o in book.values() if o[0] == side]
            if oid in last_fill:
                price = last_fill[oid]
                ev.count("unpriced_remainders_at_their_last_fill")
            elif own:
                price = max(own) if side == BID else min(own)
                ev.count("unpriced_orders_at_their_side_best")
            else:
                never.add(oid)
                ev.count("unpriced_orders_not_resting")
                return
        if oid in book:
            ev.count("orders_added_twice")
        book[oid] = [side, price, size, now, recv, place, s]
        ev.emit(place, now, recv, Kind.ADD, side, price, size, oid, s)

    def remove(oid: int, size: int | None, side: int, price: int, now: int, recv: int | None, place: str,
               s: str) -> None:
        """A cancel of ``size`` (None: all of it) of an order."""
        prev = book.get(oid)
        if prev is None:
            if oid in pending or oid in never:
                ev.count("cancels_of_orders_not_resting")
                return
            ev.count("cancels_of_unknown_orders")
            if size:
                ev.emit(place, now, recv, Kind.DELETE, side, price, size, oid, s)
            return
        if size is None or size >= prev[2]:
            del book[oid]
            ev.emit(place, now, recv, Kind.DELETE, prev[0], prev[1], prev[2], oid, s)
        else:
            prev[2] -= size
            ev.emit(place, now, recv, Kind.CANCEL, prev[0], prev[1], size, oid, s)

    def execute(oid: int, side_hint: int, price: int, size: int, now: int, recv: int | None, place: str, s: str,
                tid: int | None) -> None:
        prev = book.get(oid)
        if prev is None:
            ev.count("executions_of_unknown_orders")
            ev.emit(place, now, recv, Kind.EXECUTE, side_hint, price, size, oid, s, tid)
            return
        ev.emit(place, now, recv, Kind.EXECUTE, prev[0], price, size, oid, s, tid)
        prev[2] -= size
        if prev[2] <= 0:
            if prev[2] < 0:
                ev.count("fills_beyond_the_order_size")
            del book[oid]

    def release(oid: int, now: int, recv: int | None, place: str) -> None:
        side, price, size, _, _, _, s = pending.pop(oid)
        left = size - agg_done.get(oid, 0) if spec.sizes == "full" else size
        rest(oid, side, price, left, now, recv, place, s)

    for pos, (s, i) in enumerate(zip(src.tolist(), idx.tolist(), strict=True)):
        if drop_outside:
            ev.quiet = not inside[pos]
            if ev.quiet:
                ev.count("rows_outside_sessions_dropped")
            elif not live and book:
                for oid, (side, price, size, ets, erecv, eplace, esrc) in book.items():
                    ev.emit(eplace, ets, erecv, Kind.ADD, side, price, size, oid, esrc, snapshot=True)
                ev.count("snapshot_orders_after_the_call_auction", len(book))
        live = live or not ev.quiet
        if s == 0:
            place = f"{o.path.name} {o.where(i)}"
            oid, kind = int(oc["order_id"][i]), oc["kind"][i]
            now, recv = int(oc["ts"][i]), None if o_recv is None else int(o_recv[i])
            side, price, size, st = int(oc["side"][i]), int(oc["price"][i]), int(oc["size"][i]), str(oc["src_type"][i])
            if kind == "add":
                if agg_left.get(oid, 0) > 0:
                    pending[oid] = [side, price, size, now, recv, place, st]
                else:
                    left = size - agg_done.get(oid, 0) if spec.sizes == "full" else size
                    rest(oid, side, price, left, now, recv, place, st)
            elif kind == "cancel":
                remove(oid, size, side, price, now, recv, place, st)
            elif kind == "delete":
                remove(oid, None if oid in book else size, side, price, now, recv, place, st)
            else:  # modify / change: a new price and size
                if oid not in book:
                    ev.count("modifies_of_unknown_orders")
                book[oid] = [side if oid not in book else book[oid][0], price, size, now, recv, place, st]
                ev.emit(place, now, recv, Kind.MODIFY, book[oid][0], price, size, oid, st)
            continue
        k = tpos[i]
        place = f"{t.path.name} {t.where(i)}"
        now, recv = int(tc["ts"][i]), None if t_recv is None else int(t_recv[i])
        b, sl, price, size = t_buy[k], t_sell[k], int(tc["price"][i]), int(tc["size"][i])
        st, tid = str(tc["src_type"][i]), None if t_tid is None else int(t_tid[i])
        if t_kind[k] == "cancel":  # SZSE writes cancels in the trades file: the one order id given is cancelled
            oid = b if b else sl
            remove(oid, size, BID if b else ASK, 0, now, recv, place, st)
            continue
        a = aggr[k]
        if a == 0:
            ev.count("auction_matches")
            ev.emit(place, now, recv, Kind.CROSS, 0, price, size, NO_ORDER, st, tid)
            execute(b, BID, price, size, now, recv, place, st, tid)
            execute(sl, ASK, price, size, now, recv, place, st, tid)
            continue
        if a is None:
            ev.count("trades_of_unknown_orders")
            ev.emit(place, now, recv, Kind.TRADE, 0, price, size, NO_ORDER, st, tid)
            continue
        passive, taker = (sl, b) if a == 1 else (b, sl)
        execute(passive, -a, price, size, now, recv, place, st, tid)
        if taker in book:
            ev.count("aggressors_already_resting")
            execute(taker, a, price, size, now, recv, place, st, tid)
        agg_done[taker] = agg_done.get(taker, 0) + size
        last_fill[taker] = price
        agg_left[taker] = agg_left.get(taker, 1) - 1
        if agg_left[taker] <= 0 and taker in pending:
            release(taker, now, recv, place)
    ev.quiet = False
    if pending:
        ev.count("orders_still_waiting_for_their_trades", len(pending))


def _remaining(o: Parsed, orows: np.ndarray, t: Parsed, trows: np.ndarray, spec: FeedMapping, ev: _Events) -> None:
    """``remaining``: the order rows are the stream; the trades file names who aggressed and each fill's trade."""
    oc = o.cols
    kinds = oc["kind"][orows].tolist()
    recv_all = oc.get("ts_recv")
    ts_all = oc["ts"][orows]
    recv_sel = recv_all[orows] if recv_all is not None else ts_all
    lead, trail = 0, 0
    if spec.leading_snapshot or spec.trailing_deletes == "drop":
        lead, trail = capture_edges([k == "add" for k in kinds], [k == "delete" for k in kinds], recv_sel, ts_all)
        lead = lead if spec.leading_snapshot else 0
        trail = trail if spec.trailing_deletes == "drop" else 0
        ev.count("snapshot_rows", lead)
        ev.count("synthetic_deletes_dropped", trail)
    # aggressor and passive of each trade: the column, else the later of the two orders to appear
    first: dict[int, int] = {}
    for pos, oid in enumerate(oc["order_id"][orows].tolist()):
        first.setdefault(int(oid), pos)
    aggr = _aggressors(t, trows, spec, first, None)
    buy, sell, size = _col(t, "buy_order_id", trows), _col(t, "sell_order_id", trows), t.cols["size"][trows]
    tids = _col(t, "trade_id", trows)
    t_kind = _col(t, "kind", trows, "trade")
    taker_vol: dict[int, int] = {}
    fills: dict[int, deque] = {}
    for k, a in enumerate(aggr):
        if t_kind[k] != "trade" or a not in (1, -1):
            ev.count("trades_without_an_aggressor")
            continue
        taker, passive = (buy[k], sell[k]) if a == 1 else (sell[k], buy[k])
        taker_vol[taker] = taker_vol.get(taker, 0) + int(size[k])
        fills.setdefault(passive, deque()).append((int(size[k]), tids[k]))
    book: dict[int, list] = {}  # id -> [remaining, side, price]
    pending: dict[int, list] = {}  # a taker before its fills are done: [side, limit, remaining, taken, src]
    market: dict[int, str] = {}

    def trade_id(oid: int, filled: int) -> int | None:
        q = fills.get(oid)
        if q and q[0][0] == filled:
            return q.popleft()[1]
        ev.count("executions_without_a_trade_row")
        return None

    end = len(orows) - trail
    for pos in range(end):
        i = int(orows[pos])
        kind, oid = kinds[pos], int(oc["order_id"][i])
        now = int(oc["ts"][i])
        recv = None if recv_all is None else int(recv_all[i])
        side, price, vol, st = int(oc["side"][i]), int(oc["price"][i]), int(oc["size"][i]), str(oc["src_type"][i])
        place = f"{o.path.name} {o.where(i)}"
        snap = pos < lead
        if kind == "add":
            if price <= 0 and snap:
                market[oid] = "snapshot_zero_price_rows"
                ev.count("snapshot_zero_price_rows")
            elif vol <= 0 or price <= 0:
                market[oid] = "market_order_rows"  # a market order never rests (Bitstamp: volume 0 or price 0)
                ev.count("market_order_rows")
            elif oid in taker_vol and not snap:
                pending[oid] = [side, price, vol, 0, st]
            else:
                book[oid] = [vol, side, price]
                ev.emit(place, now, recv, Kind.ADD, side, price, vol, oid, st, snapshot=snap)
            continue
        if kind in ("skip",):
            continue
        if oid in market:
            ev.count(market[oid])
            if kind == "delete":
                del market[oid]
            continue
        if oid in pending:
            p = pending[oid]
            if kind == "delete":
                del pending[oid]
                ev.count("takers_filled_on_entry" if vol == 0 else "taker_remainders_cancelled_before_resting")
                continue
            p[3] += max(p[2] - vol, 0)
            p[2] = vol
            ev.count("taker_fill_rows")
            if p[3] >= taker_vol[oid]:
                del pending[oid]
                if vol > 0:
                    book[oid] = [vol, p[0], p[1]]
                    ev.emit(place, now, recv, Kind.ADD, p[0], p[1], vol, oid, p[4])
            continue
        prev = book.get(oid)
        if kind in ("change", "modify"):
            if prev is None:
                ev.count("changed_unknown_order")
                book[oid] = [vol, side, price]
                ev.emit(place, now, recv, Kind.MODIFY, side, price, vol, oid, st)
                continue
            fell = prev[0] - vol
            prev[0] = vol
            if fell > 0:
                ev.emit(place, now, recv, Kind.EXECUTE, prev[1], price, fell, oid, st, trade_id(oid, fell))
            else:
                ev.count("changed_price_only" if fell == 0 else "changed_volume_increases")
                ev.emit(place, now, recv, Kind.MODIFY, prev[1], price, vol, oid, st)
            continue
        if kind == "cancel":
            ev.count("cancel_rows_as_deletes")
        book.pop(oid, None)
        if vol > 0:
            if prev is not None and prev[0] != vol:
                ev.count("delete_volume_differs_from_tracked")
            ev.emit(place, now, recv, Kind.DELETE, side, price, vol, oid, st)
        elif prev is not None and prev[0] > 0:
            ev.count("filled_deletes")
            ev.emit(place, now, recv, Kind.EXECUTE, prev[1], price, prev[0], oid, st, trade_id(oid, prev[0]))
        elif prev is not None:
            ev.count("deletes_after_full_fill")
        else:
            ev.count("filled_deletes_unknown_size")
    if pending:
        ev.count("takers_still_waiting_at_the_end", len(pending))
