"""Baseline generators of synthetic order flow, simulated in the same matching engine as the model's rollouts, so
their output is a canonical :class:`~tradefm.events.EventDay` like a rollout's: Compound Hawkes
(:mod:`.hawkes`) and its zero-intelligence control (:mod:`.zero_intelligence`). Both have ``fit(days)`` and
``generate(params, day, start_ts, duration_s, seed)``."""

from . import hawkes, zero_intelligence
from .hawkes import HawkesParams, classify
from .zero_intelligence import ZIParams

__all__ = ["HawkesParams", "ZIParams", "classify", "hawkes", "zero_intelligence"]
