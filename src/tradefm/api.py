"""``tradefm.load(path)``: a trained model as a market simulator, without reading the modules first.

It bundles what every use needs (the model, its tokenizer, the run's days and split) behind two methods:
:meth:`MarketSimulator.rollout` (closed-loop rollouts from a real book, :mod:`tradefm.generation.rollout`) and
:meth:`MarketSimulator.env` (a Gymnasium trading environment, :mod:`tradefm.env`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .events import EventDay, InputError, read_day
from .runs import default_day, model_folder


class MarketSimulator:
    """A trained TradeFM model, its tokenizer and (for a run folder) the run's events and split."""

    def __init__(self, path: str | Path, device: str | None = None, dtype: str = "float32") -> None:
        import torch

        from .model import TradeFM
        from .tokenizer import Tokenizer

        folder, self.run = model_folder(path)
        device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        self.model = TradeFM.from_pretrained(folder, device=device, dtype=dtype).eval()
        self.tokenizer = Tokenizer.load(folder / "tokenizer.json")
        self._days: dict[str, EventDay] = {}
        self._sources: dict[str, Any] = {}

    def day(self, day: str | Path | EventDay | None = None) -> EventDay:
        """An events file read once (default: the run's deepest book)."""
        if isinstance(day, EventDay):
            return day
        if day is None:
            day = default_day(self.run)
        key = str(day)
        if key not in self._days:
            if not Path(day).exists():
                raise InputError(f"no events file at {day}")
            self._days[key] = read_day(day)
        return self._days[key]

    def start(self, day: EventDay, at: float | int) -> int:
        """A start time: a fraction of the day's session (0.85: where the test part starts), or ns."""
        from .evaluation.metrics import session

        if isinstance(at, float) and 0 <= at <= 1:
            first, last = session(day)
            return int(first + at * (last - first))
        return int(at)

    def rollout(self, day: str | Path | EventDay | None = None, start: float | int = 0.85, events: int = 1000,
                rollouts: int = 4, seed: int = 0, duration_s: float | None = None, **kwargs: Any) -> list[EventDay]:
        """Closed-loop rollouts from the real book at ``start`` (keyword arguments as
        :func:`tradefm.generation.rollout.generate`: sampling, participant, control, progress)."""
        from .generation.rollout import generate

        d = self.day(day)
        return generate(self.model, self.tokenizer, d, self.start(d, start), events, rollouts, seed,
                        duration_s=duration_s, **kwargs)

    def env(self, task: str = "execution", day: str | Path | EventDay | None = None, num_envs: int | None = None,
            **options: Any):
        """A trading environment on this model (``task`` "execution" or "market_making"); ``num_envs`` gives the
        vector env over the batched simulator. Options as :class:`tradefm.env.Config` and the task's fields
        (background, steps, events, quantity, ...)."""
        from .env import Execution, ExecutionEnv, MarketMaking, MarketMakingEnv, Source, TradingVectorEnv

        if task not in ("execution", "market_making"):
            raise InputError(f"task must be 'execution' or 'market_making', not {task!r}")
        d = self.day(day)
        key = f"{d.instrument.key}/{d.date}"
        if key not in self._sources:
            self._sources[key] = Source((self.model, self.tokenizer), d, run=self.run)
        source = self._sources[key]
        if num_envs is not None:
            return TradingVectorEnv(num_envs, source=source,
                                    task=Execution() if task == "execution" else MarketMaking(), **options)
        return (ExecutionEnv if task == "execution" else MarketMakingEnv)(source=source, **options)


def load(path: str | Path, device: str | None = None, dtype: str = "float32") -> MarketSimulator:
    """A run folder (``runs/demo``) or a model folder as a :class:`MarketSimulator`; ``dtype`` "bfloat16" runs
    the model in bf16 (about 1.5x the rollouts on CPUs with bf16 matrix units, half the memory)."""
    return MarketSimulator(path, device, dtype)
