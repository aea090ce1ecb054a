"""save_pretrained / push_to_hub / from_pretrained, shared by every kind of hubmod repo.

The same idea as huggingface_hub's ``ModelHubMixin``: a model class says what its weights, its
config.json and its card are, and gets saving, publishing as one commit, and loading by repo id,
``hf-hub:`` id or directory — with hubmod's rules (safetensors and JSON only, commit shas kept).
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import torch

from . import __version__
from .errors import HubmodError
from .hub import Hub, Snapshot, get_hub, open_ref
from .refs import RepoRef, parse_source
from .untrusted import check_format_version, printable
from .weights import WEIGHTS

CONFIG = "config.json"

T = TypeVar("T", bound="HubArtifact")


class PredictsClassNames:
    """``predict``: class names, one per image, for a model whose ``forward`` gives one score per class."""

    class_names: list[str]

    def predict(self, images: Any) -> list[str]:
        """Class names, one per image."""
        names = self.class_names
        return [names[i] for i in self(images).argmax(1).tolist()]  # type: ignore[operator]


class HubArtifact:
    """A kind of hubmod repo. Each concrete subclass declares what it is, and is registered by it:

    ``kind`` (config.json's ``hubmod_kind``), ``format_version`` (the layout of its config.json this
    hubmod writes and reads), ``title`` (what messages call it) and ``card_template`` (its README
    template in cards/). Loading any repo goes through one template, `from_snapshot`, which reads
    config.json once and checks kind and version before the subclass's `_from_config` sees it.
    """

    kind: ClassVar[str]
    format_version: ClassVar[int] = 1
    title: ClassVar[str]
    card_template: ClassVar[str]
    version_required: ClassVar[bool] = True  # False: a config.json without format_version reads as version 1
    registry: ClassVar[dict[str, type[HubArtifact]]] = {}  # hubmod_kind -> class
    pushed_revision: str | None = None  # the commit the last push_to_hub made

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "kind" in cls.__dict__:  # concrete kinds declare theirs; shared bases do not
            HubArtifact.registry[cls.kind] = cls

    # ---------------------------------------------------------------- what a subclass provides

    def weights(self) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def config_dict(self) -> dict:
        """config.json: `config_header` first, then what the kind records."""
        raise NotImplementedError

    @classmethod
    def config_header(cls) -> dict:
        """The fields every hubmod config.json starts with: what it is, in which format, written by which hubmod."""
        return {"hubmod_kind": cls.kind, "format_version": cls.format_version, "hubmod_version": __version__}

    def card_values(self, name: str, hub_name: str | None, directory: Path | None) -> tuple[Any, dict]:
        """What the card of repo ``name`` holds: its metadata (a ``ModelCardData``) and the values its
        template (``card_template``) fills in. ``directory`` is where the repo is being written, for any
        file the card shows (a chart); None when only the card's text is wanted."""
        raise NotImplementedError

    def write_card(self, directory: Path, repo_id: str | None, hub_name: str | None) -> None:
        """README.md: this kind's template filled with its card values (hubmod.cards.render)."""
        from .cards import render

        card_data, values = self.card_values(repo_id or directory.name, hub_name, directory)
        render(self.card_template, card_data, directory / "README.md", **values)

    def card_text(self, repo_id: str, hub_name: str | None) -> str:
        """The card's text alone, as ``write_card`` would write it, with no file beside it (the web page
        draws a module's kept channels itself)."""
        from .cards import render

        card_data, values = self.card_values(repo_id, hub_name, None)
        return render(self.card_template, card_data, **values)

    def commit_message(self) -> str:
        raise NotImplementedError

    @classmethod
    def _from_config(cls: type[T], config: dict, snap: Snapshot, hub: str | Hub | None) -> T:
        """The artifact from its checked config.json (kind and format version match) and the repo's files."""
        raise NotImplementedError

    # ---------------------------------------------------------------- shared behaviour

    @classmethod
    def from_snapshot(cls: type[T], snap: Snapshot, hub: str | Hub | None = None) -> T:
        """Load from an opened repo: config.json is read once, its kind and format version checked here."""
        config = snap.read_json(CONFIG)
        where = printable(snap.name)
        found = config.get("hubmod_kind")
        if found != cls.kind:
            raise HubmodError(f"{where} is {describe_kind(found)}, not a {cls.title}")
        check_format_version(config, cls.format_version, cls.title, where, required=cls.version_required)
        return cls._from_config(config, snap, hub)

    def save_pretrained(self, directory: str | Path, card: bool = True, repo_id: str | None = None,
                        hub_name: str | None = None) -> Path:
        """Write model.safetensors, config.json and (by default) README.md to ``directory``."""
        from safetensors.torch import save_file

        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        state = {k: v.detach().cpu().contiguous() for k, v in self.weights().items()}  # from any device
        save_file(state, str(directory / WEIGHTS), metadata={"format": "pt", "hubmod_kind": self.kind})
        (directory / CONFIG).write_text(json.dumps(self.config_dict(), indent=1))
        if card:
            self.write_card(directory, repo_id, hub_name)
        return directory

    def push_to_hub(self, repo_id: str, hub: str | Hub | None = None, message: str | None = None,
                    private: bool = False) -> str:
        """Publish as one commit; returns its sha (also kept as ``pushed_revision``).

        The repo is built in a temporary folder first. ``private`` makes a repo the push creates
        private, on hubs that have visibility (the Hugging Face Hub).
        """
        hub = get_hub(hub)
        with tempfile.TemporaryDirectory(prefix=f"hubmod-{self.kind}-") as tmp:
            self.save_pretrained(tmp, repo_id=repo_id, hub_name=hub.name)
            self.pushed_revision = hub.push_folder(repo_id, Path(tmp), message or self.commit_message(), private)
        return self.pushed_revision

    @classmethod
    def from_pretrained(cls: type[T], source: str | Path, revision: str | None = None,
                        hub: str | Hub | None = None) -> T:
        """Load from a repo id (``ns/name``, ``hf-hub:ns/name``) or a local directory."""
        ref = parse_source(str(source.resolve()) if isinstance(source, Path) else source)
        if revision is not None:
            if ref.kind == "dir":
                raise HubmodError("revision= applies to hub repos, not to local directories")
            ref = RepoRef(ref.kind, ref.repo_id, revision)
        snap = open_ref(ref, hub)
        obj = cls.from_snapshot(snap, hub)
        obj.source = snap
        return obj


def artifact_class(config: dict) -> type[HubArtifact] | None:
    """The registered kind a config.json declares, or None (a plain timm model, or a kind this hubmod lacks)."""
    kind = config.get("hubmod_kind")
    return HubArtifact.registry.get(kind) if isinstance(kind, str) else None


def describe_kind(kind: object) -> str:
    """What a config.json's ``hubmod_kind`` value makes a repo, in words, for messages."""
    if kind is None:
        return "a plain timm model"
    if isinstance(kind, str) and kind in HubArtifact.registry:
        return f"a {HubArtifact.registry[kind].title}"
    return f"of a kind this hubmod does not know ({printable(kind)[:60]!r})"
