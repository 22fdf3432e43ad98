"""Databento DBN files (``.dbn`` / ``.dbn.zst``): market-by-order (mbo) plus trades-only views (trades, mbp-1).

Decoded with the ``databento_dbn`` package (records are streamed in chunks, so big days do not need the whole
file in memory). Prices stay integers in Databento's 1e-9 units (``price_scale=1_000_000_000``); sizes are
contracts (``size_scale=1``).

MBO actions, per order id (the reader tracks each order's side, price and size):

* A add -> ADD; M modify -> MODIFY (new price and size); R clear -> CLEAR (the reader's order state is reset).
* F fill -> EXECUTE on the resting order (Databento's side of a fill is the resting side).
* T trade -> TRADE with the *passive* side (Databento reports the aggressor: B -> ASK, A -> BID) and no order id
  (the id on a T record is the aggressor's). A T with side N has no aggressor (an auction uncross, such as CME's
  reopening): it becomes a CROSS print; the F records that follow change the book.
* Side N on C, M or F (CME's uncross fills): the side is the order's own, known from its add; an F of an order
  never seen becomes a CROSS (it still traded), a C or M of one is counted, not applied. Every side-N record is
  counted in ``notes`` (``side_n_*``); nothing valid is refused. An A with side N is bad input.
* C cancel -> DELETE when it removes the order's whole remaining size (a CME cancel always does), CANCEL with the
  removed amount when it removes less (venues with partial cancels), DELETE with the record's size if the order
  is unknown.
* Fill echoes: on CME every fill is followed by the book update it implies, a C that removes a fully filled order
  or an M that sets a partly filled order to its remaining size. EXECUTE already takes that size off the order,
  so replaying the echo would take it twice; the reader drops these (``notes["fill_echoes_dropped"]``), unless
  ``keep_fill_echoes=True``.

Records flagged ``F_SNAPSHOT`` (the book at the start of the file, after a CLEAR) get ``snapshot=True``; their
``ts`` is the resting order's own entry time (days earlier), so time order is only checked on live rows.

trades schema -> TRADE events. mbp-1 / mbp-10 / tbbo are aggregated price levels, not orders: only their trade
records (action T) become TRADE events and the level updates are counted in ``notes["book_updates_skipped"]``.

The tick comes from a definition file (``definition=`` path, or a ``*definition*.dbn*`` file beside the data;
``min_price_increment`` of the same instrument id), else it is the gcd of the observed prices. CME
instruments get ``timezone="America/Chicago"``. The feed carries no trade date, so the day is the venue's own
(``session="venue"``, the default): the Globex trade date on CME (the session that opens at 17:00 Chicago time
belongs to the next day; a UTC date would cut the evening session in two), the local date in the venue's time
zone elsewhere. ``session="utc"`` keeps the UTC date, ``session="cme"`` the Globex date on any dataset.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np

from ..events import ASK, BID, NO_ORDER, BadInputError, EventDay, Instrument, Kind, Problems
from .generic import finish, gcd_tick, head_bytes, open_binary, with_loc

PRICE_SCALE = 1_000_000_000
F_SNAPSHOT = 1 << 5
UNDEF_PRICE = 2**63 - 1
VENUES = {  # dataset -> (venue, timezone)
    "GLBX.MDP3": ("cme", "America/Chicago"),
    "XNAS.ITCH": ("nasdaq", "America/New_York"),
    "XNYS.PILLAR": ("nyse", "America/New_York"),
    "ARCX.PILLAR": ("nyse-arca", "America/New_York"),
    "IFEU.IMPACT": ("ice-europe", "Europe/London"),
}
CME_SESSION_SHIFT_NS = 7 * 3600 * 1_000_000_000  # 17:00 Chicago + 7 h = midnight of the trade date
_SIDES = {"B": BID, "A": ASK, "N": 0}
_TRADE_SCHEMAS = ("trades", "mbp-1", "mbp-10", "tbbo")
_COLS = ("ts", "ts_recv", "kind", "side", "price", "size", "order_id", "snapshot", "src_type")


def detect(path: Path) -> bool:
    """A ``.dbn`` / ``.dbn.zst`` name, or DBN magic bytes at the start of the (decompressed) file."""
    name = Path(path).name.lower()
    if name.endswith(".dbn") or name.endswith(".dbn.zst"):
        return True
    return head_bytes(Path(path), 3) == b"DBN"


def _schema(path: Path) -> str | None:
    """The schema a DBN file's metadata names, or None if it has none to read."""
    try:
        meta = next(_records(path))
    except Exception:  # not DBN, or empty: read() says which
        return None
    return str(getattr(getattr(meta, "schema", None), "value", getattr(meta, "schema", None)))


def not_events(path: Path) -> str | None:
    """Why a DBN file found in a folder is not read as events: a schema without orders or trades."""
    schema = _schema(path)
    if schema is None or schema == "mbo" or schema in _TRADE_SCHEMAS:
        return None
    if schema == "definition":
        return "instrument definitions (the tick of the DBN files beside it)"
    return f"schema '{schema}' holds no orders or trades"


def _definition_beside(path: Path) -> Path | None:
    """A definitions file in the same folder: Databento's downloads put ``*.definition.dbn.zst`` beside the
    data, and a user who downloads one expects its tick to be used."""
    for p in sorted(path.parent.glob("*definition*.dbn*")):
        if p != path and p.is_file() and _schema(p) == "definition":
            return p
    return None


def _records(path: Path) -> Iterator[object]:
    """Metadata first, then every record, decoded chunk by chunk."""
    import databento_dbn as dbn

    decoder = dbn.DBNDecoder()
    with open_binary(path) as f:
        while chunk := f.read(1 << 20):
            yield from decoder.write_and_decode(chunk)
    left = decoder.buffer()
    if left:
        raise ValueError(f"file ends inside a record ({len(left)} bytes left over)")


def _symbols(meta: object) -> dict[int, str]:
    """instrument_id -> the requested symbol; a parent symbol (ES.FUT) covering several ids gets ``.<id>``."""
    out: dict[int, str] = {}
    for raw_symbol, intervals in (getattr(meta, "mappings", None) or {}).items():
        ids = set()
        for iv in intervals:
            try:
                ids.add(int(iv["symbol"]))
            except (KeyError, TypeError, ValueError):
                continue
        for iid in ids:
            out[iid] = raw_symbol if len(ids) == 1 else f"{raw_symbol}.{iid}"
    return out


def _definitions(path: Path) -> dict[int, object]:
    out: dict[int, object] = {}
    for rec in _records(Path(path)):
        if type(rec).__name__.startswith("InstrumentDefMsg"):
            out[int(rec.instrument_id)] = rec
    return out


class _Instrument:
    """Output columns and MBO order state of one instrument."""

    def __init__(self) -> None:
        self.cols: dict[str, list] = {k: [] for k in _COLS}
        self.loc: list[int] = []
        self.orders: dict[int, list] = {}  # id -> [side, price, size, filled since last update]
        self.counts: dict[str, int] = {}

    def count(self, key: str, n: int = 1) -> None:
        self.counts[key] = self.counts.get(key, 0) + n

    def emit(self, loc: int, rec: object, kind: Kind, side: int, price: int, size: int, oid: int, snap: bool,
             src: str) -> None:
        c = self.cols
        c["ts"].append(int(rec.ts_event))
        c["ts_recv"].append(int(rec.ts_recv))
        c["kind"].append(int(kind))
        c["side"].append(side)
        c["price"].append(price)
        c["size"].append(size)
        c["order_id"].append(oid)
        c["snapshot"].append(snap)
        c["src_type"].append(src)
        self.loc.append(loc)


def _signed(order_id: int) -> int:
    """uint64 order id -> int64 with the same bits (ids >= 2**63 become negative, reversibly)."""
    return order_id - (1 << 64) if order_id >= 1 << 63 else order_id


def read(
    path: Path,
    *,
    skip_bad: bool = False,
    definition: str | Path | None = None,
    session: str = "venue",
    keep_fill_echoes: bool = False,
    symbol: str | None = None,
    **_: object,
) -> Iterator[EventDay]:
    """Yield one EventDay per instrument and day of an mbo, trades, mbp-1, mbp-10 or tbbo DBN file."""
    path = Path(path)
    if session not in ("venue", "utc", "cme"):
        raise ValueError("session must be 'venue', 'utc' or 'cme'")
    problems = Problems(str(path), skip_bad)
    records = _records(path)
    try:
        meta = next(records)
    except StopIteration:
        raise BadInputError(str(path), "file", "metadata", None, "empty file") from None
    except Exception as e:  # databento_dbn.DBNError
        raise BadInputError(str(path), "file", "metadata", str(e)[:200], "not a DBN file") from None
    schema = str(getattr(getattr(meta, "schema", None), "value", getattr(meta, "schema", None)))
    if schema != "mbo" and schema not in _TRADE_SCHEMAS:
        raise BadInputError(str(path), "metadata", "schema", schema,
                            f"unsupported schema: order-level 'mbo' or trades from {', '.join(_TRADE_SCHEMAS)}")
    dataset = str(meta.dataset)
    venue, timezone = VENUES.get(dataset, (dataset.lower(), "UTC"))
    if session == "venue":
        session = "cme" if venue == "cme" else "local"
    names = _symbols(meta)
    definition = definition or _definition_beside(path)
    defs = _definitions(Path(definition)) if definition else {}
    per: dict[int, _Instrument] = {}
    where_list: list[int] = []  # loc -> 1-based record number
    skipped_types: dict[str, int] = {}
    index = 0
    while True:
        try:
            rec = next(records)
        except StopIteration:
            break
        except Exception as e:  # databento_dbn.DBNError: a truncated or corrupt stream
            raise BadInputError(str(path), f"record {index + 1}", "record", str(e)[:200], "cannot decode") from None
        index += 1
        rtype = type(rec).__name__
        if (schema == "mbo" and rtype != "MBOMsg") or (schema != "mbo" and not hasattr(rec, "action")):
            skipped_types[rtype] = skipped_types.get(rtype, 0) + 1
            continue
        state = per.setdefault(int(rec.instrument_id), _Instrument())
        loc = len(where_list)
        where_list.append(index)
        try:
            if schema == "mbo":
                _mbo(rec, state, loc, keep_fill_echoes)
            else:
                _trade_only(rec, state, loc, schema)
        except BadInputError as e:
            problems.report(BadInputError(str(path), f"record {index}", e.field, e.value, e.reason))

    def where(i: int) -> str:
        return f"record {where_list[i]}"

    for iid, state in per.items():
        d = defs.get(iid)
        prices = np.asarray(state.cols["price"], dtype=np.int64)
        if d is not None and 0 < int(d.min_price_increment) < UNDEF_PRICE:
            tick, tick_from = int(d.min_price_increment), "definition min_price_increment"
        else:
            tick, tick_from = gcd_tick(prices), "gcd of observed prices"
        name = symbol or (str(d.raw_symbol) if d is not None else None) or names.get(iid) or str(iid)
        currency = str(d.currency) if d is not None and str(d.currency) else "USD"
        instrument = Instrument(symbol=name, venue=venue, price_scale=PRICE_SCALE, tick_size=tick, size_scale=1,
                                currency=currency, timezone=timezone)
        notes: dict[str, object] = {
            "reader": f"databento.{schema}",
            "dataset": dataset,
            "instrument_id": iid,
            "records": len(state.loc) + sum(v for k, v in state.counts.items() if k.startswith("dropped:")),
            "tick_from": tick_from,
            **{k.removeprefix("dropped:"): v for k, v in state.counts.items()},
        }
        if skipped_types:
            notes["other_record_types_skipped"] = dict(skipped_types)
        table = with_loc(state.cols, state.loc)
        yield from finish(
            table, path=path, instrument=instrument, where=where, problems=problems, notes=notes,
            date_timezone={"cme": "America/Chicago", "local": timezone}.get(session, "UTC"),
            day_shift_ns=CME_SESSION_SHIFT_NS if session == "cme" else 0,
        )


def _text(v: object) -> str:
    return str(getattr(v, "value", v))


def _price(rec: object, required: bool) -> int:
    p = int(rec.price)
    if p == UNDEF_PRICE:
        if required:
            raise BadInputError("", "", "price", p, "undefined price (UNDEF_PRICE)")
        return 0
    return p


def _mbo(rec: object, st: _Instrument, loc: int, keep_echoes: bool) -> None:
    action, side_text = _text(rec.action), _text(rec.side)
    if side_text not in _SIDES:
        raise BadInputError("", "", "side", side_text, "unknown side (B/A/N)")
    side = _SIDES[side_text]
    snap = bool(int(rec.flags) & F_SNAPSHOT)
    oid = int(rec.order_id)
    sid = _signed(oid)
    size = int(rec.size)
    prev = st.orders.get(oid)
    if side == 0 and action in ("C", "M", "F"):
        # side N: the venue did not say (CME's uncross fills); the order's own add did
        if prev is not None:
            side = prev[0]
            st.count(f"side_n_{action}_resolved_from_the_order")
        elif action == "F":
            st.count("side_n_fills_of_unknown_orders_as_cross")
            st.emit(loc, rec, Kind.CROSS, 0, _price(rec, True), size, sid, snap, action)
            return
        else:
            st.count(f"dropped:side_n_{action}_of_unknown_orders_not_applied")
            return
    if action == "A":
        if side == 0:
            raise BadInputError("", "", "side", side_text, "an add needs a side (B/A)")
        st.orders[oid] = [side, _price(rec, True), size, False]
        st.emit(loc, rec, Kind.ADD, side, _price(rec, True), size, sid, snap, action)
    elif action == "M":
        price = _price(rec, True)
        if prev is not None and prev[3] and not keep_echoes and prev[1] == price and prev[2] == size:
            prev[3] = False
            st.count("dropped:fill_echoes_dropped")
            return
        if prev is None:
            st.count("modify_unknown_order")
        st.orders[oid] = [side, price, size, False]
        st.emit(loc, rec, Kind.MODIFY, side, price, size, sid, snap, action)
    elif action == "C":
        st.orders.pop(oid, None)
        price = _price(rec, False)
        if prev is not None and prev[3] and prev[2] <= 0 and not keep_echoes:
            st.count("dropped:fill_echoes_dropped")
        elif prev is not None and 0 < size < prev[2]:
            prev[2] -= size
            st.orders[oid] = prev
            st.emit(loc, rec, Kind.CANCEL, side, price, size, sid, snap, action)
        else:
            if prev is None:
                st.count("cancel_unknown_order")
            st.emit(loc, rec, Kind.DELETE, side, price, size, sid, snap, action)
    elif action == "F":
        if prev is None:
            st.count("fill_unknown_order")
        else:
            prev[2] -= size
            prev[3] = True
        st.emit(loc, rec, Kind.EXECUTE, side, _price(rec, True), size, sid, snap, action)
    elif action == "T":
        if side == 0:  # no aggressor: an auction (uncross) print; its fills change the book
            st.count("side_n_trades_as_cross")
            st.emit(loc, rec, Kind.CROSS, 0, _price(rec, True), size, NO_ORDER, snap, action)
        else:
            st.emit(loc, rec, Kind.TRADE, -side, _price(rec, True), size, NO_ORDER, snap, action)
    elif action == "R":
        st.orders.clear()
        st.emit(loc, rec, Kind.CLEAR, 0, 0, 0, NO_ORDER, snap, action)
    elif action == "N":
        st.count("dropped:no_action_records")  # DBN's "none" action: a record that changes nothing (flags only)
    else:
        raise BadInputError("", "", "action", action, "unknown MBO action (A/C/M/F/T/R/N)")


def _trade_only(rec: object, st: _Instrument, loc: int, schema: str) -> None:
    action, side_text = _text(rec.action), _text(rec.side)
    if side_text not in _SIDES:
        raise BadInputError("", "", "side", side_text, "unknown side (B/A/N)")
    if action == "T" and _SIDES[side_text] == 0:  # no aggressor: an auction (uncross) print
        st.count("side_n_trades_as_cross")
        st.emit(loc, rec, Kind.CROSS, 0, _price(rec, True), int(rec.size), NO_ORDER, False, action)
    elif action == "T":
        st.emit(loc, rec, Kind.TRADE, -_SIDES[side_text], _price(rec, True), int(rec.size), NO_ORDER, False, action)
    elif action in ("A", "C", "M", "F", "R", "N"):
        st.count("dropped:book_updates_skipped")
    else:
        raise BadInputError("", "", "action", action, f"unknown {schema} action")
