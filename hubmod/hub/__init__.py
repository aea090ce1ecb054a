"""Where repos live: the embedded directory hub, the Hugging Face Hub, or a local directory.

Every read returns a `Snapshot`: a local directory holding exactly one commit of a repo, plus that
commit's sha. Every write is one atomic commit: a repo either has all the files of a push or none of
them. The hub is chosen when a call is made (never at import), by one rule (HUB_RULE): ``--hub``, else
``HUBMOD_HUB``, else the Hugging Face Hub when ``HF_ENDPOINT`` or ``HF_TOKEN`` is set, else the
embedded hub.

The package in files: ``base`` (Snapshot, the Hub interface, the read limits), ``local`` (the
embedded hub), ``hf`` (the Hugging Face Hub through huggingface_hub) and ``selection`` (which hub
a call uses).
"""

from __future__ import annotations

from .base import (
    HF,
    LISTING_SORTS,
    LOCAL,
    MAX_CARD_BYTES,
    MAX_JSON_BYTES,
    MAX_WEIGHTS_BYTES,
    READ_FILES,
    Hub,
    ListedRepo,
    Snapshot,
    dir_snapshot,
    existing_dir,
    hubmod_home,
    tree_digest,
)
from .hf import DEFAULT_ENDPOINT, DEFAULT_TIMEOUT, TIMEOUT_ENV, HfHub, request_timeout, retry_transient
from .local import LocalHub
from .selection import HUB_RULE, default_hub_reason, get_hub, hub_for, open_ref

__all__ = [
    "DEFAULT_ENDPOINT", "DEFAULT_TIMEOUT", "HF", "HUB_RULE", "LISTING_SORTS", "LOCAL", "MAX_CARD_BYTES",
    "MAX_JSON_BYTES", "MAX_WEIGHTS_BYTES", "READ_FILES", "TIMEOUT_ENV", "HfHub", "Hub", "ListedRepo", "LocalHub",
    "Snapshot", "default_hub_reason", "dir_snapshot", "existing_dir", "get_hub", "hub_for", "hubmod_home",
    "open_ref", "request_timeout", "retry_transient", "tree_digest",
]
