"""Rendering model cards from the templates in the top-level cards/ folder, and what cards share.

A card is the recipe as much as the description: like mergekit's cards, it names the inputs
(the parent and its commit, or the module repos and theirs) as ``base_model``, links the method's
paper, and embeds the exact command, so anyone can reproduce the repo. Each artifact says what
its card holds (``HubArtifact.card_values``) and the base class renders it with ``render``; this
module knows no artifact class, so nothing imports in a circle. The split index's card is written
here (``write_index_card``): the index is a schema, not an artifact.
"""

from __future__ import annotations

from pathlib import Path

from .formatting import percent
from .hub import LOCAL

CHART = "kept_channels.png"


def render(template: str, card_data, path: Path | None = None, **values) -> str:
    """Render one of the templates in the top-level cards/ folder, which the package reads as
    ``hubmod/_cards`` (a link to it in a checkout, a copy in a wheel) through importlib.resources;
    the card's text, also saved to ``path`` when given."""
    from importlib.resources import as_file, files

    from huggingface_hub import ModelCard

    with as_file(files("hubmod") / "_cards" / template) as template_path:
        card = ModelCard.from_template(card_data, template_path=str(template_path), project_url=project_url(),
                                       **values)
    if path is not None:
        card.save(path)
    return str(card)


def project_url() -> str | None:
    """The project's home page from the installed package's metadata (``[project.urls]`` Homepage,
    Repository or Source), or None: cards link only a page that exists."""
    from importlib.metadata import PackageNotFoundError, metadata

    try:
        urls = metadata("hubmod").get_all("Project-URL") or []
    except PackageNotFoundError:
        return None
    named = dict(u.split(", ", 1) for u in urls if ", " in u)
    for key in ("Homepage", "Repository", "Source"):
        if named.get(key, "").startswith("https://"):
            return named[key]
    return None


def usage(hub_name: str | None) -> tuple[str, str]:
    """Extra Python argument and CLI flag that make a usage snippet work on the hub the repo is on."""
    if hub_name == LOCAL:
        return ', hub="local"', " --hub local"
    return "", ""


def method_info(method: dict) -> tuple[str, str]:
    """The method's title and paper URL as the module config records them (checked where it was read)."""
    name = method.get("name") or "?"
    return method.get("title") or name, method.get("paper_url") or ""


def module_metadata(cfg) -> dict:
    """What ``hubmod find`` reads from a module card's metadata (Hub listings carry it without a download)."""
    metrics, parent = cfg.metrics, cfg.parent
    out = {"class": cfg.class_name, "parent_classes": list(parent["label_names"]),
           "parent": parent.get("repo_id"), "parent_revision": parent.get("revision"),
           "parent_hub": parent.get("hub"), "architecture": parent.get("architecture"),
           "method": cfg.method.get("name"), "input_size": list(cfg.data_config.get("input_size", [])),
           "split_id": cfg.split_id, "exposed": bool(cfg.exposure)}
    for key in ("test_f1", "val_f1", "kept_kernels", "macs"):
        if isinstance(metrics.get(key), int | float):
            out[key] = metrics[key]
    return out


def repo_url(parent: dict) -> str | None:
    hub, repo_id = parent.get("hub"), parent.get("repo_id")
    if not repo_id or hub in (None, "dir", LOCAL):
        return None
    return f"{hub}/{repo_id}"


def write_index_card(index: dict, directory: Path) -> None:
    from huggingface_hub import ModelCardData

    pretty, paper_url = method_info(index["method"])
    parent = index["parent"]
    card_data = ModelCardData(library_name="hubmod", tags=["hubmod", "split-index", index["method"]["name"]],
                              base_model=parent.get("repo_id") if parent.get("hub") not in (None, "dir") else None)
    rows = [{**e, "revision": e["revision"][:12], "kept": percent(e.get("kept_kernels", 0.0)),
             "macs": percent(e.get("macs_ratio", 0.0))} for e in index["modules"]]
    render("split_index.md.j2", card_data, directory / "README.md",
            parent_name=parent.get("repo_id") or "local parent",
            parent_sha=parent.get("revision"), method_pretty=pretty, paper_url=paper_url, rows=rows,
            index_repo=index["index_repo"], composed_accuracy=percent(index["metrics"]["composed_accuracy"]),
            parent_accuracy=percent(index["metrics"]["parent_accuracy"]), eval_data=index["metrics"]["eval_data"],
            command=index.get("command", ""))


def write_kept_chart(groups: list[dict], path: Path, title: str) -> None:
    """Bar chart: each channel group's size in the parent and how many channels the module keeps."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [g["name"] for g in groups]
    sizes = [g["size"] for g in groups]
    kept = [len(g["kept"]) - (1 if g.get("zeroed") else 0) for g in groups]
    fig, ax = plt.subplots(figsize=(max(5.0, 0.35 * len(groups) + 2), 3.2), dpi=100)
    xs = range(len(groups))
    ax.bar(xs, sizes, color="#d0d7de", label="parent")
    ax.bar(xs, kept, color="#0969da", label="module")
    ax.set_xticks(list(xs))
    ax.set_xticklabels(names, rotation=75, ha="right", fontsize=6)
    ax.set_ylabel("channels")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
