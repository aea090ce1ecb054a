"""Which dataset a parent says it was trained on, so ``hubmod split SOURCE`` needs no ``--dataset``.

A parent names its training data in two places hubmod reads: ``hubmod_validation.dataset`` in its
config.json (written by hubmod's own training) and ``datasets`` in its model card's metadata (the
Hub's convention). Both come from a repo hubmod may not trust, so only a Hub dataset id
(``namespace/name``) or hubmod's own ``fashion-mnist`` is taken, never a path or URL: a repo must
not make hubmod read a file of the user's choosing.
"""

from __future__ import annotations

import re

from .data import FASHION_MNIST, FASHION_MNIST_HF_ID
from .hub import Snapshot
from .parents import VALIDATION_KEY, card_metadata, validation_record
from .untrusted import printable

_DATASET_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,95}/[A-Za-z0-9][A-Za-z0-9_.-]{0,95}")


def safe_dataset_name(value: object) -> str | None:
    """``value`` as a dataset to load, if it is a Hub id or ``fashion-mnist`` (the local copy of its Hub id)."""
    if not isinstance(value, str) or ".." in value:
        return None
    if value in (FASHION_MNIST, FASHION_MNIST_HF_ID):
        return FASHION_MNIST
    return value if _DATASET_ID.fullmatch(value) else None


def trained_on(snapshot: Snapshot) -> tuple[str, str] | None:
    """(dataset, where it was read) for a parent that names its training data, else None."""
    config = snapshot.read_json("config.json")
    if isinstance(config, dict) and config.get(VALIDATION_KEY) is not None:
        record = validation_record(config[VALIDATION_KEY], printable(snapshot.name))
        name = safe_dataset_name(record["dataset"])
        if name:
            return name, f"{VALIDATION_KEY} in its config.json"
    for name in _card_datasets(snapshot):
        safe = safe_dataset_name(name)
        if safe:
            return safe, "the datasets of its model card"
    return None


def _card_datasets(snapshot: Snapshot) -> list:
    value = card_metadata(snapshot).get("datasets")
    if isinstance(value, str):
        return [value]
    return value[:20] if isinstance(value, list) else []
