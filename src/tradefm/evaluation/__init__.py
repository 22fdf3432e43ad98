"""Evaluation: how well a model predicts held-out order flow, and how real generated flow looks."""
