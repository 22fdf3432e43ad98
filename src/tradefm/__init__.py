"""tradefm: foundation models of market order flow.

``tradefm.load(path)`` gives a trained run as a market simulator (``rollout(...)``, ``env(...)``)."""

from __future__ import annotations

__version__ = "0.1.0"


def load(path, device: str | None = None):
    """A run folder or a model folder as a :class:`tradefm.api.MarketSimulator`."""
    from .api import load as _load

    return _load(path, device)


__all__ = ["__version__", "load"]
