"""Budgets: spend per scope and window, thresholds, and what they do. Pure but for `runner`."""
