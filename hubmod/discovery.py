"""Finding modules by class across a hub (``hubmod find``).

Every module card carries the tag ``hubmod-class-<class-slug>`` and, under ``hubmod`` in its
metadata, what a user chooses a module by: its class and its parent's label set, the parent and
its commit, architecture, method, F1 and size measured at split time, input format. A listing
filtered by ``hubmod`` and the class tag returns that metadata without downloading any card (the
Hugging Face Hub's ``expand=cardData``; the embedded hub reads the cards on disk). The metadata came
from repos hubmod did not write, so every field is checked before it is shown; a repo published
before a field existed is still listed, and the row says which fields it lacks.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

from .errors import HubmodError, InvalidRepoError, option
from .hub import LISTING_SORTS, Hub, ListedRepo, get_hub
from .refs import class_tag, is_commit_sha, same_class
from .untrusted import Fields, printable

logger = logging.getLogger(__name__)

SORTS = ("f1", "macs", "downloads", "recent")
DEFAULT_LIMIT = 20
SCAN_LIMIT = 1000  # repos read per class when the order is hubmod's own (f1, macs) or a filter applies


@dataclass
class FoundModule:
    """One module repo of a class, as its card's metadata describes it (None: the card does not say)."""

    class_name: str
    repo_id: str
    sha: str | None
    parent: str | None = None
    parent_revision: str | None = None
    architecture: str | None = None
    method: str | None = None
    f1: float | None = None  # test F1 measured at split time, in the split's composition
    kept_kernels: float | None = None  # share of the parent's conv kernels
    macs: int | None = None
    input_size: list[int] | None = None
    license: str | None = None
    exposed: bool = False  # split with --negatives
    downloads: int | None = None
    last_modified: str | None = None
    missing: list[str] = field(default_factory=list)  # metadata fields the card lacks

    def to_dict(self) -> dict:
        return asdict(self)


def _row(listed: ListedRepo, wanted: str) -> FoundModule | None:
    """The row for one listed repo, or None when its card is not a module of class ``wanted``."""
    card = listed.card_data
    meta = card.get("hubmod") if isinstance(card.get("hubmod"), dict) else {}
    f = Fields(meta, f"{printable(listed.repo_id)[:100]} card metadata hubmod")
    try:
        name = f.str("class", optional=True, max_len=500)
        if name is not None and not same_class(name, wanted):
            return None  # a card whose tag names one class and whose metadata another
        row = FoundModule(class_name=name or wanted, repo_id=listed.repo_id,
                          sha=listed.sha if listed.sha and is_commit_sha(listed.sha) else None,
                          downloads=listed.downloads, last_modified=listed.last_modified)
        row.parent = f.str("parent", optional=True, max_len=200)
        parent_revision = f.str("parent_revision", optional=True, max_len=64)
        row.parent_revision = parent_revision if parent_revision and is_commit_sha(parent_revision) else None
        row.architecture = f.str("architecture", optional=True, max_len=200)
        row.method = f.str("method", optional=True, max_len=100)
        row.f1 = f.number("test_f1", optional=True, lo=0.0, hi=1.0)
        row.kept_kernels = f.number("kept_kernels", optional=True, lo=0.0, hi=1.0)
        macs = f.number("macs", optional=True, lo=0, hi=1e18)
        row.macs = int(macs) if macs is not None else None
        size = f.list("input_size", optional=True, max_len=3)
        if size is not None and len(size) == 3 and all(type(v) is int and 0 < v < 100_000 for v in size):
            row.input_size = size
        row.exposed = bool(f.bool("exposed", optional=True))
    except InvalidRepoError as e:
        logger.info("skipping %s: %s", printable(listed.repo_id)[:100], e)
        return None
    lic = card.get("license")
    row.license = printable(lic)[:100] if isinstance(lic, str) else None
    by_name = {"parent": row.parent, "parent_revision": row.parent_revision, "architecture": row.architecture,
               "method": row.method, "test_f1": row.f1, "kept_kernels": row.kept_kernels, "macs": row.macs,
               "input_size": row.input_size}  # the card's field names
    row.missing = [k for k, v in by_name.items() if v is None]
    return row


def _check_args(classes: Sequence[str], sort: str, limit: int, min_f1: float | None, max_macs: int | None) -> None:
    if not classes or any(not isinstance(c, str) or not c.strip() for c in classes):
        raise HubmodError("name at least one class to find, e.g. hubmod find Sneaker")
    if sort not in SORTS:
        raise HubmodError(f"unknown order {option('sort', sort)}; use one of {', '.join(SORTS)}")
    if type(limit) is not int or limit < 1:
        raise HubmodError(f"{option('limit')} must be a whole number, at least 1 (got {limit!r})")
    if min_f1 is not None and not (isinstance(min_f1, int | float) and 0 <= min_f1 <= 1):
        raise HubmodError(f"{option('min_f1')} must be between 0 and 1 (got {min_f1!r})")
    if max_macs is not None and (type(max_macs) is not int or max_macs < 0):
        raise HubmodError(f"{option('max_macs')} must be a whole number of MACs (got {max_macs!r})")


def _same(wanted: str | None, value: str | None) -> bool:
    return wanted is None or (value or "").casefold() == wanted.casefold()


def find(classes: Sequence[str], hub: str | Hub | None = None, architecture: str | None = None,
         method: str | None = None, parent: str | None = None, min_f1: float | None = None,
         max_macs: int | None = None, sort: str = "f1", limit: int = DEFAULT_LIMIT) -> dict[str, list[FoundModule]]:
    """Module repos of each class on ``hub``, best first by ``sort``, at most ``limit`` per class.

    Classes match a module's class by exact name, case-insensitively or by slug, as REFs do. The
    other arguments filter on what the cards record (``parent`` is a repo id; ``min_f1`` a share,
    0..1); a module whose card lacks a filtered field is left out of that filter's results.
    """
    _check_args(classes, sort, limit, min_f1, max_macs)
    target = get_hub(hub)
    filtered = any(v is not None for v in (architecture, method, parent, min_f1, max_macs))
    out: dict[str, list[FoundModule]] = {}
    for wanted in classes:
        server_sort = sort if sort in LISTING_SORTS else None
        scan = limit if server_sort and not filtered else SCAN_LIMIT
        rows = [r for listed in target.list_models(["hubmod", class_tag(wanted)], server_sort, scan)
                if (r := _row(listed, wanted)) is not None]
        rows = [r for r in rows if _same(architecture, r.architecture) and _same(method, r.method)
                and (parent is None or r.parent == parent)
                and (min_f1 is None or (r.f1 is not None and r.f1 >= min_f1))
                and (max_macs is None or (r.macs is not None and r.macs <= max_macs))]
        if sort == "f1":
            rows.sort(key=lambda r: (-(r.f1 if r.f1 is not None else -math.inf), r.repo_id))
        elif sort == "macs":
            rows.sort(key=lambda r: (r.macs if r.macs is not None else math.inf, r.repo_id))
        out[wanted] = rows[:limit]
    return out
