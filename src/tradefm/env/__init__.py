"""Gymnasium environments where an agent trades against a market that reacts (TradeFM closed loop), one that
does not react to it (the real flow replayed), or Compound Hawkes flow; registered as ``tradefm/Execution-v0``
and ``tradefm/MarketMaking-v0`` when this package is imported::

    import gymnasium as gym
    import tradefm.env  # registers the ids

    env = gym.make("tradefm/Execution-v0", model="runs/demo", background="model", quantity=2000)
    vec = gym.make_vec("tradefm/Execution-v0", num_envs=16, model="runs/demo")  # one model call per event
"""

from __future__ import annotations

from functools import partial

import gymnasium as gym

from .core import (
    Action,
    Config,
    Execution,
    ExecutionEnv,
    InvalidAction,
    MarketMaking,
    MarketMakingEnv,
    Source,
    Trading,
    TradingEnv,
    TradingVectorEnv,
    make_vector,
)
from .markets import BACKGROUNDS

IDS = {"tradefm/Execution-v0": ("ExecutionEnv", "execution"),
       "tradefm/MarketMaking-v0": ("MarketMakingEnv", "market_making")}

for _id, (_cls, _task) in IDS.items():
    if _id not in gym.registry:
        gym.register(id=_id, entry_point=f"tradefm.env.core:{_cls}", vector_entry_point=partial(make_vector, _task),
                     disable_env_checker=True)

__all__ = ["BACKGROUNDS", "IDS", "Action", "Config", "Execution", "ExecutionEnv", "InvalidAction", "MarketMaking",
           "MarketMakingEnv", "Source", "Trading", "TradingEnv", "TradingVectorEnv", "make_vector"]
