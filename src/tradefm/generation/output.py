"""Writing generated days: canonical Parquet, and LOBSTER message/orderbook CSVs that LOBSTER tools read."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from ..events import EventDay, atomic_path, write_day_file
from .market import lobster_files


def write_rollouts(days: list[EventDay], out: str | Path, depth: int = 10) -> list[Path]:
    """``out/rollout_KK/`` per day: ``events.parquet`` and ``TICKER_DATE_START_END_{message,orderbook}_DEPTH.csv``
    (LOBSTER's own naming, so LOBSTER readers, ours included, open the folder)."""
    out = Path(out)
    folders = []
    for k, day in enumerate(days):
        folder = out / f"rollout_{k:02d}"
        write_day_file(day, folder / "events.parquet")
        ts = day.table.column("ts").to_numpy()
        midnight = datetime.fromisoformat(day.date).replace(tzinfo=ZoneInfo(day.instrument.timezone))
        ms = ((ts[[0, -1]] - int(midnight.timestamp()) * 1_000_000_000) // 1_000_000).tolist() if len(ts) else [0, 0]
        stem = f"{day.instrument.symbol}_{day.date}_{ms[0]}_{ms[1] + 1}"
        message, book = lobster_files(day, depth)
        for kind, text in (("message", message), ("orderbook", book)):
            with atomic_path(folder / f"{stem}_{kind}_{depth}.csv") as tmp:
                tmp.write_text(text)
        folders.append(folder)
    return folders
