"""Parsing what users type to name models: SOURCE and REF strings.

The rules are explicit so that a string never means one thing on one machine and another thing
elsewhere (hubmod never probes the network or the disk to guess):

* ``hf-hub:ns/name[@rev]`` is a repo on the Hugging Face Hub, whatever hub is selected.
* ``/abs/path``, ``./rel``, ``../rel``, ``~/x`` or ``.`` is a local directory.
* ``ns/name[@rev]`` is a repo on the selected hub (the embedded one by default).

A REF (used by ``compose``) is a SOURCE optionally followed by ``:CLASS``.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from pathlib import Path

from .errors import HubmodError, NotFoundError

HF_PREFIX = "hf-hub:"
_PATH_PREFIXES = ("/", "./", "../", "~")
# Hugging Face's own rule for repo names, tightened: ASCII only, no "..", no "--" at the ends.
_NAME = r"[A-Za-z0-9](?:[A-Za-z0-9._-]{0,94}[A-Za-z0-9])?"
_REPO_ID_RE = re.compile(rf"^{_NAME}/{_NAME}$")
_REVISION_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/-]{0,199}$")
_SHA_RE = re.compile(r"^[0-9a-f]{40}$")


@dataclass(frozen=True)
class RepoRef:
    """Where a model lives: a repo on a hub, or a local directory."""

    kind: str  # "repo" (selected hub), "hf" (Hugging Face Hub), or "dir"
    repo_id: str | None = None
    revision: str | None = None
    path: Path | None = None

    def __str__(self) -> str:
        if self.kind == "dir":
            return source_path(self.path)
        text = f"{HF_PREFIX}{self.repo_id}" if self.kind == "hf" else str(self.repo_id)
        return f"{text}@{self.revision}" if self.revision else text


def source_path(path: Path) -> str:
    """A directory as a SOURCE the CLI reads back as a directory: ``parent`` -> ``./parent``."""
    text = str(path)
    return text if text.startswith(("/", ".", "~")) else f"./{text}"


def is_commit_sha(text: str | None) -> bool:
    return bool(text) and bool(_SHA_RE.match(text))


def validate_repo_id(repo_id: str) -> str:
    """Return ``repo_id`` if it is a safe ``namespace/name``; raise a one-line error otherwise."""
    if not isinstance(repo_id, str) or not _REPO_ID_RE.match(repo_id) or ".." in repo_id:
        raise HubmodError(
            f"invalid repo id {repo_id!r}: use 'namespace/name' with letters, digits, '-', '_' or '.'"
        )
    return repo_id


def validate_revision(revision: str) -> str:
    if not _REVISION_RE.match(revision) or ".." in revision or revision.endswith("/"):
        raise HubmodError(f"invalid revision {revision!r}: use a branch name or a commit sha")
    return revision


def _split_revision(text: str) -> tuple[str, str | None]:
    if "@" in text:
        repo_id, revision = text.split("@", 1)
        return repo_id, validate_revision(revision)
    return text, None


def looks_like_path(text: str) -> bool:
    """Whether a SOURCE or dataset names a local directory (``.``, ``/…``, ``./…``, ``../…``, ``~…``)."""
    return text == "." or text.startswith(_PATH_PREFIXES)


def parse_source(text: str) -> RepoRef:
    """Parse a SOURCE string (see module docstring)."""
    text = text.strip()
    if not text:
        raise HubmodError("empty model reference: give 'namespace/name', 'hf-hub:namespace/name' or ./dir")
    if text.startswith(HF_PREFIX):
        repo_id, revision = _split_revision(text[len(HF_PREFIX):])
        return RepoRef("hf", validate_repo_id(repo_id), revision)
    if looks_like_path(text):
        try:
            return RepoRef("dir", path=Path(text).expanduser())
        except RuntimeError:  # "~user" for a user this machine does not know
            raise NotFoundError(f"cannot read {text!r} as a directory: no such home directory") from None
    repo_id, revision = _split_revision(text)
    if repo_id.count("/") != 1:
        raise HubmodError(
            f"cannot read {text!r} as a model: use 'namespace/name[@revision]', "
            "'hf-hub:namespace/name', or a directory path starting with ./ or /"
        )
    return RepoRef("repo", validate_repo_id(repo_id), revision)


def parse_ref(text: str) -> tuple[RepoRef, str | None]:
    """Parse a compose REF, ``SOURCE[:CLASS]``. Class names may contain '/', never ':'."""
    text = text.strip()
    prefix = ""
    if text.startswith(HF_PREFIX):
        prefix, text = HF_PREFIX, text[len(HF_PREFIX):]
    source, sep, class_name = text.partition(":")
    if sep and not class_name.strip():
        raise HubmodError(f"REF {prefix + text!r} ends with ':' but names no class: use REPO:CLASS or REPO")
    return parse_source(prefix + source), (class_name.strip() if sep else None)


def slugify(name: str) -> str:
    """A lowercase ASCII slug for a class name ('T-shirt/top' -> 't-shirt-top'); may be empty."""
    text = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode("ascii").lower()
    return re.sub(r"[^a-z0-9]+", "-", text).strip("-")[:60].strip("-")


def same_class(a: str, b: str) -> bool:
    """Whether two class names name one class: equal but for case, or with the same non-empty slug."""
    return a.casefold() == b.casefold() or (slugify(a) != "" and slugify(a) == slugify(b))


def class_tag(class_name: str) -> str:
    """The tag that makes a module findable by its class (``hubmod find``): ``hubmod-class-<slug>``."""
    return f"hubmod-class-{slugify(class_name) or 'unnamed'}"


def class_slugs(class_names: list[str]) -> list[str]:
    """Slugs for every class of a model, stable and collision-free.

    A slug depends only on the label list, so re-splitting the same parent lands modules in the same
    repos. Classes whose slug would be empty or shared get their class index appended.
    """
    raw = [slugify(n) for n in class_names]
    counts: dict[str, int] = {}
    for s in raw:
        counts[s] = counts.get(s, 0) + 1
    out = []
    for i, s in enumerate(raw):
        if not s:
            out.append(f"class-{i}")
        elif counts[s] > 1:
            out.append(f"{s}-{i}")
        else:
            out.append(s)
    # A disambiguated slug may itself collide with a plain one ("a-1" vs class "a" index 1): fall back
    # to index-suffixing everything that still collides.
    seen: dict[str, int] = {}
    for s in out:
        seen[s] = seen.get(s, 0) + 1
    return [f"{s}-c{i}" if seen[s] > 1 else s for i, s in enumerate(out)]


def match_class(name: str, class_names: list[str], where: str) -> int:
    """Index of ``name`` in ``class_names``: exact, then case-insensitive, then by slug (``ankle-boot``)."""
    if name in class_names:
        return class_names.index(name)
    folded = [c.casefold() for c in class_names]
    if name.casefold() in folded:
        return folded.index(name.casefold())
    slugs = class_slugs(class_names)
    if name in slugs:
        return slugs.index(name)
    import difflib

    close = difflib.get_close_matches(name.casefold(), folded, n=1, cutoff=0.6)
    hint = f"did you mean {class_names[folded.index(close[0])]!r}? " if close else ""
    raise NotFoundError(f"unknown class {name!r} in {where}; {hint}valid classes: {', '.join(class_names)}")
