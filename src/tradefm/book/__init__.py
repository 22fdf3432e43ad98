"""The matching engine: a deterministic level-3 order book with price-time priority."""

from .orderbook import Counters, Fill, OrderBook

__all__ = ["Counters", "Fill", "OrderBook"]
