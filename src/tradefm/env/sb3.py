"""Stable-Baselines3 on the batched environments (the optional ``rl`` extra).

SB3 steps its own ``VecEnv`` type, which resets a finished environment at once and hands its last observation
over in ``infos[i]["terminal_observation"]``. :class:`SB3VecEnv` gives a :class:`~tradefm.env.core.Trading`
batch that face, so PPO trains on N books with one model call per market event for all of them; the episodes of a
batch end together, so a reset is a new start for each book (drawn from the training part).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from stable_baselines3.common.vec_env import VecEnv

from .core import Trading, _start


class SB3VecEnv(VecEnv):
    """A :class:`Trading` batch as an SB3 vector environment (starts from the core's configured part)."""

    def __init__(self, core: Trading, seed: int = 0) -> None:
        self.core = core
        self._rng = np.random.default_rng(seed)
        self._actions: Any = None
        self.render_mode = None
        super().__init__(core.n, core.single_observation_space, core.single_action_space)

    def reset(self) -> np.ndarray:
        starts, market_seed = _start(self.core.source, self.core.cfg, self._rng, None, self.core.n)
        return self.core.reset(starts, market_seed)

    def seed(self, seed: int | None = None) -> list[int | None]:
        if seed is not None:
            self._rng = np.random.default_rng(seed)
        return [seed] * self.num_envs

    def step_async(self, actions: np.ndarray) -> None:
        self._actions = actions

    def step_wait(self):
        acts = list(self._actions) if self.core.cfg.continuous else [int(a) for a in self._actions]
        obs, rewards, ended, notes = self.core.step(acts)
        infos: list[dict[str, Any]] = [{**self.core.info(b), "notes": notes[b]} for b in range(self.num_envs)]
        if ended.all():
            for b in range(self.num_envs):
                infos[b]["terminal_observation"] = obs[b]
                infos[b]["TimeLimit.truncated"] = False
            obs = self.reset()
        return obs, rewards.astype(np.float32), ended.copy(), infos

    def close(self) -> None:
        self.core.markets = None

    def get_attr(self, attr_name: str, indices=None) -> list[Any]:
        return [getattr(self, attr_name)] * len(self._indices(indices))

    def set_attr(self, attr_name: str, value: Any, indices=None) -> None:
        setattr(self, attr_name, value)

    def env_method(self, method_name: str, *args, indices=None, **kwargs) -> list[Any]:
        return [getattr(self, method_name)(*args, **kwargs)] * len(self._indices(indices))

    def env_is_wrapped(self, wrapper_class, indices=None) -> list[bool]:
        return [False] * len(self._indices(indices))

    def _indices(self, indices) -> list[int]:
        if indices is None:
            return list(range(self.num_envs))
        return [indices] if isinstance(indices, int) else list(indices)
