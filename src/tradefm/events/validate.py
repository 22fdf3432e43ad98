"""Row checks shared by every reader, vectorised: sizes, kinds, sides and time order."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pyarrow as pa

from .errors import BadInputError, Problems
from .schema import Kind

_SIZED = np.array([Kind.ADD, Kind.CANCEL, Kind.DELETE, Kind.EXECUTE, Kind.EXECUTE_HIDDEN, Kind.TRADE, Kind.CROSS])
_SIDED = np.array([Kind.ADD, Kind.CANCEL, Kind.DELETE, Kind.EXECUTE, Kind.MODIFY])
_KINDS = np.array([int(k) for k in Kind])


def check_events(
    table: pa.Table, path: str, where: Callable[[int], str], problems: Problems, check_time: bool = True
) -> pa.Table:
    """Validate a reader's output table; return it with bad rows dropped (only when ``problems.skip_bad``).

    ``where(i)`` turns a row index into the source's own location ("line 17", "record 3")."""
    kind = table.column("kind").to_numpy()
    side = table.column("side").to_numpy()
    size = table.column("size").to_numpy()
    price = table.column("price").to_numpy()
    ts = table.column("ts").to_numpy()
    checks: list[tuple[np.ndarray, str, np.ndarray, str]] = [
        (~np.isin(kind, _KINDS), "kind", kind, "unknown event type"),
        (np.isin(kind, _SIZED) & (size <= 0), "size", size, "size must be positive"),
        (np.isin(kind, _SIDED) & (side != 1) & (side != -1), "side", side, "side must be +1 (bid) or -1 (ask)"),
        ((kind == Kind.ADD) & (price <= 0), "price", price, "an order needs a positive price"),
    ]
    if check_time and len(ts) > 1:
        back = np.zeros(len(ts), dtype=bool)
        back[1:] = ts[1:] < np.maximum.accumulate(ts)[:-1]
        checks.append((back, "ts", ts, "time goes backwards"))
    bad_any = np.zeros(len(kind), dtype=bool)
    for bad, name, values, reason in checks:
        for i in np.flatnonzero(bad):
            problems.report(BadInputError(path, where(int(i)), name, values[i].item(), reason))
        bad_any |= bad
    return table.filter(pa.array(~bad_any)) if bad_any.any() else table
