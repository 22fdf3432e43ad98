"""Train a small execution agent against the reactive TradeFM market, then compare it with TWAP on held-out starts.

The agent is a linear rule over a few observation fields (time left, quantity left, spread, the mid's move
since arrival): a market order when its score is positive, else a limit order at its own touch. Its weights are
found by the cross-entropy method, every candidate of a generation playing at once in one vector environment
(one model call per market event for all of them). Training starts come from the day's training part, the
comparison from its test part, against every background: an agent trained against the reactive model and
one trained against the replayed flow (``--background replay``) can then be compared on the same markets.

    python examples/execution_agent.py runs/demo [--background model|hawkes|replay] [--generations 4]
"""

from __future__ import annotations

import argparse

import numpy as np

import tradefm

# observation layout with levels=5: 20 book fields, then inventory, P&L, time left, quantity left, mid move,
# spread, events, traded, resting buys, resting sells
TIME_LEFT, QTY_LEFT, MID_MOVE, SPREAD = 22, 23, 24, 25
MARKET, LIMIT_AT_TOUCH = 1, 2


def features(obs: np.ndarray) -> np.ndarray:
    """[N, 5]: a constant, how far behind schedule, quantity left, spread and the mid's move (ticks)."""
    behind = obs[:, QTY_LEFT] - obs[:, TIME_LEFT]
    return np.stack([np.ones(len(obs)), behind, obs[:, QTY_LEFT], obs[:, SPREAD], obs[:, MID_MOVE]], axis=1)


def play(vec, weights: np.ndarray, seed: int, part: str, aggressive: bool = False):
    """One episode per row of ``weights`` ([N, 5]) from one start; the shortfall of each (bps), and with
    ``aggressive`` also the share of its decisions that were market orders."""
    obs, _ = vec.reset(seed=seed, options={"part": part})
    done = np.zeros(vec.num_envs, dtype=bool)
    markets = []
    while not done.all():
        act = np.where((features(obs) * weights).sum(axis=1) > 0, MARKET, LIMIT_AT_TOUCH)
        markets.append(np.mean(act[~done] == MARKET))
        obs, _, done, _, info = vec.step(act)
    share = info["executed"] / vec.core.cfg.task.quantity
    return (info["shortfall_bps"], float(np.mean(markets)), float(np.mean(share))) if aggressive \
        else info["shortfall_bps"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run", help="a run folder, e.g. runs/demo")
    ap.add_argument("--background", default="model", choices=("model", "hawkes", "replay"))
    ap.add_argument("--population", type=int, default=12)
    ap.add_argument("--generations", type=int, default=4)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    sim = tradefm.load(args.run, device="cpu")
    vec = sim.env("execution", num_envs=args.population, background=args.background, steps=20, events=10,
                  quantity=2000)
    rng = np.random.default_rng(args.seed)
    mean, std = np.zeros(5), np.ones(5)
    for g in range(args.generations):
        pop = mean + std * rng.standard_normal((args.population, 5))
        cost = np.mean([play(vec, pop, args.seed + 100 * g + k, "train") for k in range(2)], axis=0)
        elite = pop[np.argsort(cost)[: max(2, args.population // 4)]]
        mean, std = elite.mean(axis=0), elite.std(axis=0) + 0.05
        print(f"generation {g}: mean shortfall {cost.mean():.2f} bps, best {cost.min():.2f} bps")

    print(f"learned weights: {np.round(mean, 2).tolist()}")
    learned = np.tile(mean, (args.population, 1))
    always = np.tile([1.0, 0.0, 0.0, 0.0, 0.0], (args.population, 1))  # a market order every decision (TWAP)
    print(f"\nheld-out starts (test part), trained against {args.background}; mean shortfall (bps) over "
          f"{args.population} markets x 3 starts, the share of decisions that were market orders and of the "
          "order executed:")
    for bg in ("model", "hawkes", "replay"):
        test = vec if bg == args.background else sim.env("execution", num_envs=args.population, background=bg,
                                                         steps=20, events=10, quantity=2000)
        for name, w in (("learned", learned), ("TWAP", always)):
            cost, share, done = zip(*(play(test, w, 10_000 + k, "eval", aggressive=True) for k in range(3)),
                                    strict=True)
            cost = np.concatenate(cost)
            print(f"  {bg:<7} {name:<8} {cost.mean():6.2f} ± {cost.std(ddof=1) / np.sqrt(len(cost)):.2f} bps  "
                  f"market orders {np.mean(share):.0%}  executed {np.mean(done):.0%}")

if __name__ == "__main__":
    main()
