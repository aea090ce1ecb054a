"""Which mask snapshot a GradSplitter search keeps, and which one it distils next.

Every mask epoch of the search leaves a record (its validation accuracy and cost); these rules pick
among them. They are pure functions of the records, tested directly.
"""

from __future__ import annotations


def price(record: dict, budget: float) -> tuple[float, float]:
    """What a choice costs, for ranking: its cost (no less than ``budget``), then its accuracy, higher first."""
    return round(max(record["cost"], budget), 4), -record["val_accuracy"]


def choose(history: list[dict], threshold: float, budget: float = 0.0) -> int:
    """Index of the cheapest record (by the penalty's measure; at or below ``budget``, the most accurate)
    within tolerance; the most accurate if none is."""
    ok = [i for i, r in enumerate(history) if r["val_accuracy"] >= threshold]
    if ok:
        return min(ok, key=lambda i: price(history[i], budget))
    return max(range(len(history)), key=lambda i: history[i]["val_accuracy"])


def next_distill_try(history: list[dict], search_threshold: float, threshold: float,
                     budget: float = 0.0) -> int | None:
    """The mask snapshot to distil next: the cheapest not yet ruled out (at or below ``budget``, the most
    accurate), or None.

    A failed try rules out every snapshot as cheap, and says how many points distillation
    wins back on this model (``recovery``); snapshots whose undistilled accuracy plus that gain
    would still miss ``threshold`` are skipped rather than paid for with another distillation.
    """
    tried = [r for r in history if "distilled_val_accuracy" in r]
    floor = max((r["cost"] for r in tried), default=-1.0)
    recovery = min((r["distilled_val_accuracy"] - r["val_accuracy"] for r in tried), default=None)
    pool = [i for i, r in enumerate(history)
            if i > 0 and r["val_accuracy"] >= search_threshold and r["cost"] > floor
            and (recovery is None or r["val_accuracy"] + recovery >= threshold)]
    return min(pool, key=lambda i: price(history[i], budget)) if pool else None
