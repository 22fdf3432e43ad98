"""Writing generated days: canonical Parquet, and LOBSTER message/orderbook CSVs that LOBSTER tools read, laid out
one rollout per folder or as LOB-Bench's real / conditioning / generated folders."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
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


def slug(name: str) -> str:
    """A name as a folder name tools take on a command line: ``real tokens, decoded`` -> ``real_tokens_decoded``."""
    return re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_")


def _write_lobster(files: tuple[str, str], folder: Path, stem: str) -> None:
    for kind, text in zip(("message", "orderbook"), files, strict=True):
        with atomic_path(folder / stem.format(kind=kind)) as tmp:
            tmp.write_text(text)


def write_lob_bench(out: str | Path, real_id: int, real: EventDay, cond: EventDay,
                    generated: Mapping[str, Sequence[EventDay]], window: int = 0) -> None:
    """One window in LOB-Bench's layout, as its ``run_bench.py --data_dir OUT --model_name SOURCE --stock SYMBOL
    --time_period DATE`` reads it (SOURCE a generator's name as a :func:`slug`). Under ``OUT/SOURCE/SYMBOL/DATE/``:
    ``data_real/`` the real window, ``data_cond/`` the real flow before it (what a conditional generator would
    see) and ``data_gen/`` the source's rollouts, as ``SYMBOL_DATE_{message,orderbook}_real_id_R[_gen_id_G].csv``,
    the names its loader pairs files by. It reads the date as the second ``_``-separated field of a name, so a
    symbol's own ``_`` become ``-``. Books have the 10 levels its scores read; those beyond the feed's ``window``
    (a level-5 file's) are empty in every source, as in the real file."""
    out = Path(out)
    symbol = real.instrument.symbol.replace("_", "-")
    stem = f"{symbol}_{real.date}_{{kind}}_real_id_{real_id}"
    real_files, cond_files = lobster_files(real, 10, window), lobster_files(cond, 10, window)
    for source, days in generated.items():
        folder = out / slug(source) / symbol / real.date
        _write_lobster(real_files, folder / "data_real", stem + ".csv")
        _write_lobster(cond_files, folder / "data_cond", stem + ".csv")
        for g, day in enumerate(days):
            _write_lobster(lobster_files(day, 10, window), folder / "data_gen", stem + f"_gen_id_{g}.csv")
