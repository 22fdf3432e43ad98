"""Run folders: which model a folder stands for, and which of a run's days is the book to trade in."""

from __future__ import annotations

import pytest

from tradefm.events import EventDay, InputError, Instrument, Kind, write_day
from tradefm.events.store import table_from_columns
from tradefm.runs import default_day, model_folder


def _day(symbol: str, kinds: list[Kind], levels: int = 0) -> EventDay:
    n = len(kinds)
    table = table_from_columns({"ts": list(range(1, n + 1)), "kind": [int(k) for k in kinds], "side": [1] * n,
                                "price": [100] * n, "size": [1] * n, "order_id": list(range(1, n + 1)),
                                "snapshot": [False] * n, "src_type": ["t"] * n})
    return EventDay(Instrument(symbol, "v", 100, 1), "2024-01-02", table, notes={"levels": levels} if levels else {})


def test_the_default_day_is_the_deepest_book_and_never_a_trades_feed(tmp_path) -> None:
    run = tmp_path / "run"
    days = {"TRADES": _day("TRADES", [Kind.TRADE] * 50), "L1": _day("L1", [Kind.ADD] * 9, levels=1),
            "L10": _day("L10", [Kind.ADD] * 5, levels=10), "FULL": _day("FULL", [Kind.ADD] * 3),
            "FULLER": _day("FULLER", [Kind.ADD] * 4)}
    paths = {k: write_day(d, run / "events") for k, d in days.items()}
    assert default_day(run) == paths["L10"]
    for gone in ("L10", "FULLER", "FULL", "L1"):
        assert default_day(run) == paths[gone]
        paths[gone].unlink()
    assert default_day(run) == paths["TRADES"]


def test_a_model_folder_is_found_in_a_run_or_a_training_out_folder(tmp_path) -> None:
    model = tmp_path / "run" / "model" / "model"
    model.mkdir(parents=True)
    (model / "tokenizer.json").write_text("{}")
    assert model_folder(tmp_path / "run") == (model, tmp_path / "run")
    assert model_folder(tmp_path / "run" / "model")[0] == model  # what `tradefm train` wrote, its out folder
    assert model_folder(model)[0] == model
    with pytest.raises(InputError, match="not a model folder"):
        model_folder(tmp_path)
