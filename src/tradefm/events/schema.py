"""The canonical order-level event: one schema for every venue.

Prices and sizes are integers in instrument units (``price_scale`` units per currency unit, ``size_scale``
units per share/contract/coin) so the matching engine never compares floats. One symbol-day is one table.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from enum import IntEnum

import pyarrow as pa
import pyarrow.compute as pc


class Kind(IntEnum):
    """Event kinds. Codes 1-7 are LOBSTER's own message types, so LOBSTER files map one to one."""

    ADD = 1  # new limit order rests (or, if marketable, matches first)
    CANCEL = 2  # partial cancel: ``size`` is the amount removed
    DELETE = 3  # the whole remaining order is removed
    EXECUTE = 4  # a visible resting order is executed (``side`` is the resting order's side)
    EXECUTE_HIDDEN = 5  # a hidden order is executed: no visible depth changes
    CROSS = 6  # auction cross trade
    HALT = 7  # trading halt / resume indicator
    TRADE = 8  # a trade print with no resting order known (``side`` is the passive side)
    MODIFY = 9  # the order gets a new price and/or size (``price``/``size`` are the new values)
    CLEAR = 10  # the venue clears the book


BID, ASK = 1, -1
"""``side``: +1 for the bid (buy) side, -1 for the ask (sell) side, 0 where a record has none. For executions
and trade prints ``side`` is always the side of the passive, resting liquidity; the aggressor is the other one."""

NO_ORDER = 0
"""``order_id`` of events that reference no order (trade prints, halts, aggregated snapshot levels)."""

SCHEMA = pa.schema(
    [
        pa.field("ts", pa.int64(), nullable=False),  # exchange timestamp, ns since the Unix epoch (UTC)
        pa.field("kind", pa.int8(), nullable=False),  # Kind
        pa.field("side", pa.int8(), nullable=False),  # BID / ASK / 0
        pa.field("price", pa.int64(), nullable=False),  # price units (see Instrument.price_scale)
        pa.field("size", pa.int64(), nullable=False),  # size units (see Instrument.size_scale)
        pa.field("order_id", pa.int64(), nullable=False),  # venue order id, NO_ORDER if none
        pa.field("snapshot", pa.bool_(), nullable=False),  # part of an initial book snapshot, not a market event
        pa.field("ts_recv", pa.int64(), nullable=True),  # local receive time (ns), where the feed records it
        pa.field("trade_id", pa.int64(), nullable=True),  # venue trade id, where the feed has one
        pa.field("src_type", pa.string(), nullable=False),  # the source's own event type, verbatim
    ]
)
COLUMNS: tuple[str, ...] = tuple(SCHEMA.names)


@dataclass(frozen=True)
class Instrument:
    """What it takes to read integer prices and sizes back as real numbers, and where they came from."""

    symbol: str
    venue: str
    price_scale: int  # price units per currency unit (LOBSTER: 10_000, Databento: 1_000_000_000)
    tick_size: int  # minimum price increment, in price units
    size_scale: int = 1  # size units per share / contract / coin (BTC in satoshi: 100_000_000)
    currency: str = "USD"
    timezone: str = "UTC"  # the venue's local time zone (for the trading day and time-of-day features)

    def __post_init__(self) -> None:
        for name in ("price_scale", "tick_size", "size_scale"):
            if int(getattr(self, name)) <= 0:
                raise ValueError(f"Instrument {self.symbol}: {name} must be a positive integer")
        if not self.symbol or not self.venue:
            raise ValueError("Instrument needs a symbol and a venue")

    @property
    def key(self) -> str:
        """``venue/symbol``: the name a tokenizer files an instrument's bins and tiers under."""
        return f"{self.venue}/{self.symbol}"


@dataclass
class EventDay:
    """One symbol-day of canonical events: the unit of work of every later stage."""

    instrument: Instrument
    date: str  # YYYY-MM-DD, the venue's trading day
    table: pa.Table
    sources: list[str] = field(default_factory=list)
    notes: dict[str, object] = field(default_factory=dict)  # reader facts worth keeping (skipped rows, ...)

    def metadata(self) -> dict[bytes, bytes]:
        meta = {"instrument": asdict(self.instrument), "date": self.date, "sources": self.sources, "notes": self.notes}
        return {b"tradefm": json.dumps(meta, sort_keys=True).encode()}

    @property
    def num_events(self) -> int:
        return self.table.num_rows

    @property
    def levels(self) -> int:
        """The feed's window: a level-N file's N (its books show N levels a side), 0 for a full book."""
        return int(self.notes.get("levels", 0) or 0)

    @property
    def trades_only(self) -> bool:
        """No order ever rests in the day (a trades feed, such as Binance's): there is no book to start from."""
        return not rests(self.table.column("kind"))


def rests(kind: pa.ChunkedArray | pa.Array) -> bool:
    """Whether a day's ``kind`` column holds any order that rests (an ADD): a book feed, not a trades feed."""
    return bool(pc.any(pc.equal(kind, int(Kind.ADD))).as_py())


def empty_table() -> pa.Table:
    return SCHEMA.empty_table()
