"""Generation: closed-loop rollouts of the model inside the matching engine, and the simulated market they share
with the baselines."""

from .market import Market, book_at, lobster_files

__all__ = ["Market", "book_at", "lobster_files"]
