"""Which hub a call uses: ``--hub``, else ``$HUBMOD_HUB``, else the Hugging Face Hub when ``HF_ENDPOINT``
or ``HF_TOKEN`` is set, else the embedded hub (HUB_RULE)."""

from __future__ import annotations

import os

from ..errors import HubmodError
from ..refs import RepoRef
from .base import HF, LOCAL, Hub, Snapshot, dir_snapshot
from .hf import HfHub
from .local import LocalHub

HUB_RULE = ("--hub, else $HUBMOD_HUB, else the Hugging Face Hub when HF_ENDPOINT or HF_TOKEN is set, "
            "else the embedded hub under $HUBMOD_HOME")


def default_hub_reason() -> tuple[str, str]:
    """The hub chosen when none is named (HUB_RULE), and why: ("local", "HUBMOD_HUB, HF_ENDPOINT, HF_TOKEN unset")."""
    if os.environ.get("HUBMOD_HUB", "").strip():
        return os.environ["HUBMOD_HUB"].strip().lower(), "HUBMOD_HUB is set"
    for var in ("HF_ENDPOINT", "HF_TOKEN"):
        if os.environ.get(var):
            return HF, f"{var} is set"
    return LOCAL, "no --hub, HUBMOD_HUB, HF_ENDPOINT or HF_TOKEN"


def get_hub(hub: str | Hub | None = None) -> Hub:
    """The hub to use now, by HUB_RULE."""
    if isinstance(hub, Hub):
        return hub
    choice = (hub or "").strip().lower() or default_hub_reason()[0]
    if choice == LOCAL:
        return LocalHub()
    if choice == HF:
        return HfHub()
    if choice.startswith(("http://", "https://")):
        return HfHub(endpoint=choice)
    raise HubmodError(f"unknown hub {hub!r}: use 'local', 'hf', or an endpoint URL")


def open_ref(ref: RepoRef, hub: str | Hub | None = None) -> Snapshot:
    """Fetch what a parsed SOURCE names, honouring its explicit prefix over the selected hub."""
    if ref.kind == "dir":
        return dir_snapshot(ref.path)
    if ref.kind == "hf":
        return HfHub().snapshot(ref.repo_id, ref.revision)
    return get_hub(hub).snapshot(ref.repo_id, ref.revision)


def hub_for(ref: RepoRef, hub: str | Hub | None = None) -> Hub | None:
    """The hub a REF lives on (None for local directories)."""
    if ref.kind == "dir":
        return None
    return HfHub() if ref.kind == "hf" else get_hub(hub)
