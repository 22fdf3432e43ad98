"""Baseline execution agents and their evaluation on held-out starts against every background.

The agents are rules over the batched core (:class:`~tradefm.env.core.Trading`), so one batch holds every agent
and seed of a start, on the model one model call per event for all of them:

- ``twap``: a market order of an equal share of what is left at every decision;
- ``immediate``: everything at once, at the first decision;
- ``passive``: passive, then aggressive: a limit order at its own touch (kept there, re-placed when the touch
  moves away) for the first half of the decisions, then TWAP on what is left.

:func:`evaluate` runs them from evenly spaced starts of the test part of the day (never the training part) and
:func:`write` gives a markdown and JSON table and a plot of the shortfall per agent per background. The shortfall
(bps of the arrival value, + is a cost) counts what is left at the end at the final mid plus the task's penalty.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from ..events import InputError
from .core import Action, Config, Execution, Source, Trading
from .markets import BACKGROUNDS

Rule = Callable[[Trading, int], list[Action]]


def _left(core: Trading, b: int) -> int:
    task = core.cfg.task
    return task.quantity - task.side * core.accounts[b].inventory


def twap(core: Trading, b: int) -> list[Action]:
    left, steps_left = _left(core, b), core.cfg.steps - core.t
    size = -(-left // max(steps_left, 1))
    return [Action("market", 0, size)] if size > 0 else []


def immediate(core: Trading, b: int) -> list[Action]:
    left = _left(core, b)
    return [Action("market", 0, left)] if left > 0 else []


def passive_then_aggressive(core: Trading, b: int) -> list[Action]:
    if core.t >= core.cfg.steps // 2:
        return [Action("cancel"), *twap(core, b)]
    side = core.cfg.task.side
    bid, ask = core.markets.book(b).best()
    touch = bid if side > 0 else ask
    acc = core.accounts[b]
    if acc.own and all(price == touch for _, price in acc.own.values()):
        return []  # still at the touch: keep the queue place
    return [Action("cancel"), Action("limit", 0, 2 * core.lot, offset=0)]


AGENTS: dict[str, Rule] = {"twap": twap, "immediate": immediate, "passive": passive_then_aggressive}


@dataclass(frozen=True)
class Evaluation:
    """The settings of an agent evaluation (its defaults run in a few minutes on two cores)."""

    starts: int = 6  # evenly spaced starts in the test part
    seeds: int = 2  # market seeds per start and agent
    steps: int = 20
    events: int = 10
    side: int = -1
    quantity: int = 2000
    penalty_bps: float = 20.0
    backgrounds: tuple[str, ...] = BACKGROUNDS
    agents: tuple[str, ...] = tuple(AGENTS)
    seed: int = 0


@dataclass
class Result:
    config: Evaluation
    day: str
    starts: list[int]
    # per background, per agent: one value per episode
    shortfall_bps: dict[str, dict[str, list[float]]] = field(default_factory=dict)
    executed: dict[str, dict[str, list[float]]] = field(default_factory=dict)
    impact_ticks: dict[str, dict[str, list[float]]] = field(default_factory=dict)  # final mid - arrival, signed
    duration_s: dict[str, dict[str, list[float]]] = field(default_factory=dict)  # market time the episode took

    def summary(self) -> dict[str, dict[str, dict[str, float]]]:
        out: dict[str, dict[str, dict[str, float]]] = {}
        for bg, per in self.shortfall_bps.items():
            out[bg] = {}
            for agent, x in per.items():
                a = np.asarray(x)
                out[bg][agent] = {"shortfall_bps": float(a.mean()),
                                  "se": float(a.std(ddof=1) / math.sqrt(len(a))) if len(a) > 1 else float("nan"),
                                  "executed": float(np.mean(self.executed[bg][agent])),
                                  "impact_ticks": float(np.mean(self.impact_ticks[bg][agent])),
                                  "duration_s": float(np.mean(self.duration_s[bg][agent])),
                                  "episodes": len(a)}
        return out


def evaluate(source: Source, cfg: Evaluation | None = None, progress: bool = True) -> Result:
    """Every agent against every background from the held-out starts; one batch per start and background."""
    from tqdm.auto import tqdm

    cfg = cfg or Evaluation()
    for a in cfg.agents:
        if a not in AGENTS:
            raise InputError(f"unknown agent {a!r} (one of {', '.join(AGENTS)})")
    task = Execution(cfg.side, cfg.quantity, cfg.penalty_bps)
    env_cfg = Config(task=task, steps=cfg.steps, events=cfg.events, part="eval")
    lo, hi = source.part("eval", env_cfg.margin_s)
    starts = np.linspace(lo, hi, cfg.starts).astype(np.int64).tolist()
    res = Result(cfg, source.key, starts)
    bar = tqdm(total=len(cfg.backgrounds) * len(starts), desc="agents", unit="start", disable=not progress)
    for bg in cfg.backgrounds:
        if bg == "model" and source.model is None:
            raise InputError("the model background needs a model (a run or model folder)")
        core = Trading(source, Config(**{**asdict(env_cfg), "task": task, "background": bg}),
                       len(cfg.agents) * cfg.seeds)
        for name in ("shortfall_bps", "executed", "impact_ticks", "duration_s"):
            getattr(res, name)[bg] = {a: [] for a in cfg.agents}
        for k, start in enumerate(starts):
            core.reset(start, cfg.seed + 1000 * k)  # each book of the batch draws its own market
            rules = [AGENTS[cfg.agents[b % len(cfg.agents)]] for b in range(core.n)]
            while not all(acc.done for acc in core.accounts):
                core.step([rules[b](core, b) for b in range(core.n)])
            for b in range(core.n):
                agent, acc = cfg.agents[b % len(cfg.agents)], core.accounts[b]
                res.shortfall_bps[bg][agent].append(core.shortfall_bps(b))
                res.executed[bg][agent].append(task.side * acc.inventory / task.quantity)
                res.impact_ticks[bg][agent].append(task.side * (acc.mid - acc.arrival) / core.tick)
                res.duration_s[bg][agent].append((core.markets.now(b) - start) / 1e9)
            bar.update()
    bar.close()
    return res


def _se(se: float) -> str:
    """`` ± se``, or nothing where one episode gives no standard error."""
    return f" ± {se:.2f}" if np.isfinite(se) else ""


def markdown(res: Result) -> str:
    c, s = res.config, res.summary()
    lines = [f"# Execution agents on held-out starts: {res.day}", "",
             f"{'Sell' if c.side < 0 else 'Buy'} {c.quantity:,} units in {c.steps} decisions of {c.events} market "
             f"events each; {len(res.starts)} starts evenly spaced in the test part of the day, {c.seeds} market "
             f"seeds each. Shortfall: bps of the arrival value against the arrival mid (+ is a cost), what is left "
             f"at the end valued at the final mid less {c.penalty_bps:g} bps; mean ± standard error over "
             "episodes. Impact: the final mid's move against the agent, ticks; time: the market time the "
             "episode's events took, seconds (each background sets its own pace).", "",
             "| agent | " + " | ".join(s) + " |", "|---|" + "---|" * len(s)]
    for agent in c.agents:
        cells = [f"{s[bg][agent]['shortfall_bps']:.2f}{_se(s[bg][agent]['se'])} "
                 f"(exec {s[bg][agent]['executed']:.0%}, impact {s[bg][agent]['impact_ticks']:+.1f}, "
                 f"time {s[bg][agent]['duration_s']:.0f} s)" for bg in s]
        lines.append(f"| {agent} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def plot(res: Result, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    s, agents = res.summary(), res.config.agents
    fig, ax = plt.subplots(figsize=(7, 4))
    width = 0.8 / max(len(s), 1)
    x = np.arange(len(agents))
    for i, bg in enumerate(s):
        ax.bar(x + i * width, [s[bg][a]["shortfall_bps"] for a in agents], width,
               yerr=[s[bg][a]["se"] for a in agents], label=bg, capsize=3)
    ax.set_xticks(x + width * (len(s) - 1) / 2, agents)
    ax.set_ylabel("implementation shortfall (bps, + is a cost)")
    ax.set_title(f"Execution agents on held-out starts: {res.day}")
    ax.axhline(0, color="k", lw=0.5)
    ax.legend(title="background")
    fig.tight_layout()
    from ..events.store import atomic_path

    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=120)
    plt.close(fig)


def write(res: Result, out: str | Path) -> Path:
    """agents.md, agents.json and agents.png in ``out`` (each written whole or not at all)."""
    from ..events.store import atomic_path

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    with atomic_path(out / "agents.md") as tmp:
        tmp.write_text(markdown(res))
    payload = {"config": asdict(res.config), "day": res.day, "starts": res.starts, "summary": res.summary(),
               "episodes": {"shortfall_bps": res.shortfall_bps, "executed": res.executed,
                            "impact_ticks": res.impact_ticks, "duration_s": res.duration_s}}
    with atomic_path(out / "agents.json") as tmp:
        tmp.write_text(json.dumps(payload, indent=1))
    plot(res, out / "agents.png")
    return out / "agents.md"
