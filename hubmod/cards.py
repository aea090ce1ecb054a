"""Model cards for module, composed and split-index repos, rendered from the templates in cards/.

A card is the recipe as much as the description: like mergekit's cards, it names the inputs
(the parent and its commit, or the module repos and theirs) as ``base_model``, links the method's
paper, and embeds the exact command, so anyone can reproduce the repo.
"""

from __future__ import annotations

import json
from pathlib import Path

from .artifact import HubArtifact  # cards know artifacts only by their base class: no import circle
from .formatting import percent
from .heads import describe_head
from .hub import LOCAL
from .refs import class_tag

CHART = "kept_channels.png"


def _render(template: str, card_data, path: Path, **values) -> None:
    """Render one of the templates in the top-level cards/ folder, which the package reads as
    ``hubmod/_cards`` (a link to it in a checkout, a copy in a wheel) through importlib.resources."""
    from importlib.resources import as_file, files

    from huggingface_hub import ModelCard

    with as_file(files("hubmod") / "_cards" / template) as template_path:
        card = ModelCard.from_template(card_data, template_path=str(template_path), project_url=project_url(),
                                       **values)
    card.save(path)


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


def _usage(hub_name: str | None) -> tuple[str, str]:
    """Extra Python argument and CLI flag that make a usage snippet work on the hub the repo is on."""
    if hub_name == LOCAL:
        return ', hub="local"', " --hub local"
    return "", ""


def _method_info(method: dict) -> tuple[str, str]:
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


def write_module_card(module: HubArtifact, directory: Path, repo_id: str | None = None,
                      hub_name: str | None = None) -> None:
    """README.md for a ClassModule: its class, parent and commit, method, size and measured F1."""
    from huggingface_hub import ModelCardData
    from huggingface_hub.repocard_data import EvalResult

    cfg = module.config
    parent, metrics, method = cfg.parent, cfg.metrics, cfg.method
    pretty, paper_url = _method_info(method)
    dataset_id = cfg.dataset.get("hub_id")
    results = []
    for key, metric in (("test_precision", "precision"), ("test_recall", "recall"), ("test_f1", "f1")):
        if key in metrics and dataset_id:
            results.append(EvalResult(task_type="image-classification", dataset_type=dataset_id,
                                      dataset_name=cfg.dataset.get("name", dataset_id),
                                      dataset_split=metrics.get("test_split", "test"), metric_type=metric,
                                      metric_value=round(float(metrics[key]), 4),
                                      metric_name=f"{metric} of {cfg.class_name} in the composed split"))
    name = repo_id or directory.name
    base = parent.get("repo_id") if parent.get("hub") not in (None, "dir") else None
    card_data = ModelCardData(
        library_name="hubmod",
        license=parent.get("license") or None,
        tags=["hubmod", "class-module", class_tag(cfg.class_name), method.get("name", ""), "image-classification",
              parent["architecture"]],
        base_model=base,
        # a pruned, possibly distilled part of the parent: of the Hub's relations, closest to a fine-tune
        base_model_relation="finetune" if base else None,
        hubmod=module_metadata(cfg),
        datasets=[dataset_id] if dataset_id else None,
        pipeline_tag="image-classification",
        model_name=name,
        eval_results=results or None,
    )
    rows = []
    for key, label, fmt in (
        ("test_precision", "precision (test, in the composed split)", percent),
        ("test_recall", "recall (test, in the composed split)", percent),
        ("test_f1", "F1 (test, in the composed split)", percent),
        ("val_precision", "precision (validation, alone, P >= 0.5)", percent),
        ("val_recall", "recall (validation, alone, P >= 0.5)", percent),
        ("val_f1", "F1 (validation, alone, P >= 0.5)", percent),
        ("split_composed_accuracy", "accuracy of the whole split composed (test)", percent),
        ("parent_accuracy", "parent accuracy (test)", percent),
    ):
        if key in metrics:
            rows.append((label, fmt(metrics[key])))
    write_kept_chart(cfg.channels["groups"], directory / CHART, f"{cfg.class_name}: kept channels per group")
    hub_arg, hub_flag = _usage(hub_name)
    data_cfg = cfg.data_config
    _render(
        module.card_template, card_data, directory / "README.md",
        class_name=cfg.class_name, class_index=cfg.class_index, num_classes=len(parent["label_names"]),
        parent_name=parent.get("repo_id") or "a local parent", parent_sha=parent.get("revision", "?"),
        parent_url=_repo_url(parent), architecture=parent["architecture"], method_pretty=pretty,
        method_name=method.get("name"), paper_url=paper_url, method_params=json.dumps(method.get("params", {})),
        weights_desc=("distilled from the parent: the kept channels and the head were retrained to reproduce the "
                      "parent's predictions" if method.get("distilled") else "the parent's own, for the kept channels"),
        kept_pct=100 * metrics.get("kept_kernels", 0.0), head_desc=describe_head(cfg.head),
        kernels=metrics.get("kernels", 0), parent_kernels=max(1, metrics.get("parent_kernels", 1)),
        params=metrics.get("params", 0), parent_params=max(1, metrics.get("parent_params", 1)),
        macs=metrics.get("macs", 0), parent_macs=max(1, metrics.get("parent_macs", 1)),
        metric_rows=rows, dataset_name=cfg.dataset.get("name", "?"), repo_id=name,
        hub_arg=hub_arg, hub_flag=hub_flag, command=cfg.command or "(made through the Python API)",
        input_size=data_cfg["input_size"], mean=data_cfg["mean"], std=data_cfg["std"],
        train_samples=cfg.dataset.get("train_samples", "?"), val_samples=cfg.dataset.get("val_samples", "?"),
        split_id=cfg.split_id, cal_own=cfg.calibration["own"], cal_other=cfg.calibration["other"],
        platt=cfg.calibration["platt"], exposure=cfg.exposure, hubmod_version=module.config.to_dict()["hubmod_version"],
    )


def _repo_url(parent: dict) -> str | None:
    hub, repo_id = parent.get("hub"), parent.get("repo_id")
    if not repo_id or hub in (None, "dir", LOCAL):
        return None
    return f"{hub}/{repo_id}"


def write_composed_card(model: HubArtifact, directory: Path, repo_id: str | None = None,
                        hub_name: str | None = None, metrics: dict | None = None, command: str | None = None) -> None:
    """README.md for a ComposedClassifier: its modules pinned to their commits, its rule, any fit."""
    from huggingface_hub import ModelCardData

    from . import __version__

    rows, parents, bases, datasets, licenses = [], set(), [], [], set()
    for m, prov in zip(model.class_modules, model.provenance, strict=True):
        cfg = m.config
        parent = cfg.parent.get("repo_id") or "local parent"
        parents.add((parent, cfg.parent.get("revision")))
        rows.append({"class_name": m.class_name, "repo": prov.get("repo_id") or "(local directory)",
                     "revision": (prov.get("revision") or "")[:12], "parent": parent,
                     "method": cfg.method.get("name"), "kept": percent(cfg.metrics.get("kept_kernels", 0.0))})
        if prov.get("repo_id") and prov.get("hub") not in (None, "dir") and prov["repo_id"] not in bases:
            bases.append(prov["repo_id"])
        if cfg.dataset.get("hub_id") and cfg.dataset["hub_id"] not in datasets:
            datasets.append(cfg.dataset["hub_id"])
        if cfg.parent.get("license"):
            licenses.add(cfg.parent["license"])
    name = repo_id or directory.name
    card_data = ModelCardData(
        library_name="hubmod", tags=["hubmod", "composed-classifier", "image-classification"],
        base_model=bases or None, base_model_relation="merge" if bases else None,
        datasets=datasets or None, pipeline_tag="image-classification",
        license=licenses.pop() if len(licenses) == 1 else None, model_name=name,
    )
    metric_rows = [(k, percent(v) if isinstance(v, float) else str(v)) for k, v in (metrics or {}).items()]
    hub_arg, hub_flag = _usage(hub_name)
    refs = " ".join(f"{r['repo']}" for r in rows)
    fit = model.fit_info if model.combiner is not None else None
    fit_flags = (f" --fit {fit['dataset']} --shots {fit['shots']} --combiner {fit['combiner']} --seed {fit['seed']}"
                 + (f" --fit-split {fit['split']}" if fit.get("source") != "images none of the parents trained on"
                    else "") if fit else "")
    if fit and fit.get("dataset_hub_id") and fit["dataset_hub_id"] not in datasets:
        card_data.datasets = [*(card_data.datasets or []), fit["dataset_hub_id"]]
    _render(
        model.card_template, card_data, directory / "README.md",
        title=f"{name}: {', '.join(model.class_names)}", num_classes=len(model.class_names),
        num_modules=len(rows), num_parents=len(parents), calibration=model.calibration, rows=rows,
        metric_rows=metric_rows, repo_id=name, hub_arg=hub_arg, hub_flag=hub_flag, fit=fit,
        command=command or (f"hubmod compose {refs} --calibration {model.calibration}{fit_flags} --output "
                            f"{name}{hub_flag}"),
        hubmod_version=__version__,
    )


def write_patched_card(model: HubArtifact, directory: Path, repo_id: str | None = None,
                       hub_name: str | None = None) -> None:
    """README.md for a PatchedClassifier: the weak model, the module that answers its class, the rule."""
    from huggingface_hub import ModelCardData

    from . import __version__

    prov, cfg = model.provenance, model.module.config
    name = repo_id or directory.name
    bases = [r for r, h in ((prov.get("weak_repo_id"), prov.get("weak_hub")),
                            (prov.get("module_repo_id"), prov.get("module_hub"))) if r and h not in (None, "dir")]
    card_data = ModelCardData(
        library_name="hubmod", tags=["hubmod", "patched-classifier", "image-classification"],
        base_model=bases or None, base_model_relation="merge" if bases else None,
        datasets=[cfg.dataset["hub_id"]] if cfg.dataset.get("hub_id") else None,
        pipeline_tag="image-classification", model_name=name,
    )
    target = model.class_names[model.target]
    weak_repo = prov.get("weak_repo_id") or "local weak model"
    module_repo = prov.get("module_repo_id") or "local module"
    hub_arg, hub_flag = _usage(hub_name)
    _render(
        model.card_template, card_data, directory / "README.md",
        title=f"{name}: {weak_repo} with {target} patched", weak_repo=weak_repo,
        weak_revision=(prov.get("weak_revision") or "")[:12], weak_arch=model.weak_spec.architecture,
        num_others=len(model.class_names) - 1, target=target, module_repo=module_repo,
        module_revision=(prov.get("module_revision") or "")[:12], method=_method_info(cfg.method)[0],
        module_parent=cfg.parent.get("repo_id") or "a local parent", strategy=model.strategy, repo_id=name,
        hub_arg=hub_arg, hub_flag=hub_flag, hubmod_version=__version__,
        command=(f"hubmod patch {weak_repo} --module {module_repo} --strategy {model.strategy} "
                 f"--output {name}{hub_flag}"),
    )


def write_index_card(index: dict, directory: Path) -> None:
    from huggingface_hub import ModelCardData

    pretty, paper_url = _method_info(index["method"])
    parent = index["parent"]
    card_data = ModelCardData(library_name="hubmod", tags=["hubmod", "split-index", index["method"]["name"]],
                              base_model=parent.get("repo_id") if parent.get("hub") not in (None, "dir") else None)
    rows = [{**e, "revision": e["revision"][:12], "kept": percent(e.get("kept_kernels", 0.0)),
             "macs": percent(e.get("macs_ratio", 0.0))} for e in index["modules"]]
    _render("split_index.md.j2", card_data, directory / "README.md",
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
