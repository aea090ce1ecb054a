"""How hubmod writes numbers for people: one style in the CLI's tables and in model cards."""

from __future__ import annotations


def percent(x: float) -> str:
    """A fraction as a percentage with two decimals, the way BENCHMARKS.md writes them: ``0.9123`` -> ``91.23 %``."""
    return f"{100 * x:.2f} %"
