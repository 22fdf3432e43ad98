"""Run folders: what ``tradefm train`` and ``tradefm demo`` leave, and how a command finds the model in one.

A demo's run folder holds ``model/model`` (the model), ``shards/`` and ``events/``; a training run's out folder
holds ``model/``. Every command that takes a model takes any of these, or the model folder itself.
"""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq

from .events import InputError, list_days
from .events.schema import rests


def model_folder(path: str | Path) -> tuple[Path, Path | None]:
    """(model folder, run folder or None) of a run folder (``model/model`` inside) or a model folder (its
    ``tokenizer.json`` beside the weights)."""
    given = path = Path(path)
    run = None
    if (path / "model" / "model" / "tokenizer.json").exists():
        run, path = path, path / "model" / "model"
    elif (path / "model" / "tokenizer.json").exists():
        run, path = path.parent, path / "model"
    if not (path / "tokenizer.json").exists():
        why = "does not exist" if not given.exists() else ("no tokenizer.json beside the weights, and no run or "
                                                           "training out folder (model/ or model/model inside)")
        raise InputError(f"{given}: not a model folder ({why})")
    if run is None and (path.parent.parent / "shards" / "manifest.json").exists():
        run = path.parent.parent  # RUN/model/model given directly
    return path, run


def default_day(run: Path | None) -> Path:
    """A run's deepest book: a level-N window by its N first, then a full-depth capture, then a level-1 day (the
    touch alone is no book to trade in), a trades-only day last; of equals, the one with the most events."""
    if run is None or not (run / "events").exists():
        raise InputError("give day=EVENTS_PARQUET (or a run folder that holds events/)")
    best, depth = None, (-1, -1, -1)
    for p in list_days(run / "events"):
        meta = json.loads((pq.read_schema(p).metadata or {}).get(b"tradefm", b"{}"))
        levels = int(meta.get("notes", {}).get("levels", 0) or 0)
        window = {0: 1, 1: 0}.get(levels, levels)
        rank = (int(rests(pq.read_table(p, columns=["kind"]).column("kind"))), window, pq.read_metadata(p).num_rows)
        if rank > depth:
            best, depth = p, rank
    if best is None:
        raise InputError(f"no events files under {run / 'events'}")
    return best
