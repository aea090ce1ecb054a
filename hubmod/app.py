"""``hubmod app``: a local web page to find modules, read their cards, compose them and try the result.

Built with Gradio, the Hub's own demo convention. Everything on the page goes through one selected
hub: modules are found with `hubmod.find`, read from that hub only, composed by class name
(`hubmod.compose_from_hub`) or by module repo, and published back to it. The page reads no file
outside the hub and the images the user uploads: a dataset named on the page (to fit a composition
or to draw sample images) must be a dataset id or a name hubmod knows, never a path, and module
cards are re-rendered from each module's checked config rather than read from the repo.
"""

from __future__ import annotations

import logging
import os
import random
import socket
from pathlib import Path
from typing import Any

from .errors import HubmodError, first_line
from .hub import Hub, get_hub
from .refs import validate_repo_id
from .untrusted import printable

logger = logging.getLogger(__name__)

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 7860
FIND_COLUMNS = ["class", "repo", "parent", "architecture", "method", "F1", "kept kernels", "MACs"]


def _page_dataset(name: str) -> str:
    """A dataset named on the page: a name hubmod knows or a hub dataset id, never a file path."""
    from .data import FASHION_MNIST

    name = (name or "").strip()
    if name == FASHION_MNIST:
        return name
    if not name or name.startswith((".", "/", "~")) or "\\" in name or Path(name).exists():
        raise HubmodError(f"the page reads datasets by name or hub id only, not files: {printable(name)!r}")
    validate_repo_id(name)
    return name


def _items(text: str) -> list[str]:
    return [t.strip() for t in (text or "").replace("\n", ",").split(",") if t.strip()]


def find_rows(hub: Hub, text: str) -> list[list[Any]]:
    """The find table for comma-separated class names."""
    from .discovery import find
    from .formatting import percent

    classes = _items(text)
    if not classes:
        raise HubmodError("type one or more class names, separated by commas")
    rows = []
    for name, found in find(classes, hub=hub).items():
        if not found:
            rows.append([name, "(no module on this hub: hubmod split a parent that has it)", "", "", "", "", "", ""])
        for r in found:
            rows.append([r.class_name, r.repo_id, r.parent or "?", r.architecture or "?", r.method or "?",
                         percent(r.f1) if r.f1 is not None else "?",
                         percent(r.kept_kernels) if r.kept_kernels is not None else "?",
                         f"{r.macs:,}" if r.macs is not None else "?"])
    return rows


def module_card(hub: Hub, repo_id: str) -> tuple[str, list[dict]]:
    """A module's card, rendered again from its checked config, and its kept channels per group."""
    from .module import ClassModule

    repo_id = validate_repo_id(repo_id.strip())
    module = ClassModule.from_snapshot(hub.snapshot(repo_id))
    text = module.card_text(repo_id, hub.name)
    body = text.split("---", 2)[2] if text.startswith("---") else text
    groups = [{"group": g["name"], "channels": len(g["kept"]), "of": g["size"]}
              for g in module.config.channels["groups"]]
    return body, groups


def compose_model(hub: Hub, text: str, fit: str, shots: int, candidates: int):
    """Class names (the best modules on the hub) or module repo ids, comma-separated, composed."""
    from .composed import compose_modules, module_in
    from .from_hub import compose_from_hub

    items = _items(text)
    if not items:
        raise HubmodError("type two or more class names (or module repos), separated by commas")
    fit_name = _page_dataset(fit) if (fit or "").strip() else None
    repos = [i for i in items if "/" in i and validate_repo_id(i)]
    if repos and len(repos) != len(items):
        raise HubmodError("name either classes or module repos (namespace/name), not both")
    if repos:
        pairs = [module_in(hub.snapshot(repo)) for repo in repos]
        return compose_modules(pairs, hub=hub, fit=fit_name, shots=int(shots))
    return compose_from_hub(items, hub=hub, candidates=int(candidates), fit=fit_name, shots=int(shots))


def composition_summary(model) -> str:
    lines = [f"**Composed {len(model.class_names)} classes** ({model.calibration} calibration"
             + (f", {model.fit_info['combiner']} combiner fitted on {model.fit_info['shots']} images per class)"
                if model.fit_info else ")"), ""]
    chosen = {e["class_name"]: e for e in (model.selection or {}).get("classes", [])}
    for name, prov in zip(model.class_names, model.provenance, strict=True):
        why = f" of {len(chosen[name]['candidates'])} candidates: {chosen[name]['why']}" if name in chosen else ""
        lines.append(f"- {name}: `{prov.get('repo_id')}`{why}")
    return "\n".join(lines)


def predict(model, image) -> tuple[str, list[dict]]:
    """The predicted class of one image and every module's score (calibrated, or the combiner's logit)."""
    import numpy as np

    array = np.asarray(image)
    if array.ndim == 3 and array.shape[2] == 4:  # the alpha channel of an uploaded PNG says nothing
        array = array[..., :3]
    scores = model(np.ascontiguousarray(array.astype(np.uint8)))[0]
    best = int(scores.argmax())
    return model.class_names[best], [{"class": n, "score": float(s)} for n, s in zip(model.class_names, scores,
                                                                                       strict=True)]


def sample_image(dataset: str, seed: int | None = None):
    """A random test image (uint8 array) of a dataset named on the page, and its label."""
    from .data import load_images

    data = load_images(_page_dataset(dataset), "test")
    i = random.Random(seed).randrange(len(data))
    return data.images[i][0].numpy(), data.class_names[int(data.labels[i])]


def _one_line(call):
    """Run ``call``; a hubmod error becomes the one line the page shows."""
    try:
        return call(), ""
    except HubmodError as e:
        return None, f"error: {first_line(e)}"


def build_app(hub: str | Hub | None = None):
    """The page as a ``gradio.Blocks`` (not launched)."""
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    import gradio as gr
    import pandas as pd

    target = get_hub(hub)

    def on_find(text):
        rows, err = _one_line(lambda: find_rows(target, text))
        return pd.DataFrame(rows or [], columns=FIND_COLUMNS), err

    def on_card(repo):
        out, err = _one_line(lambda: module_card(target, repo))
        if out is None:
            return err, pd.DataFrame(columns=["group", "channels", "of"])
        return out[0], pd.DataFrame(out[1])

    def on_compose(text, fit, shots, candidates):
        model, err = _one_line(lambda: compose_model(target, text, fit, shots, candidates))
        return model, err or composition_summary(model)

    def on_predict(model, image):
        if model is None:
            return "", pd.DataFrame(columns=["class", "score"]), "error: compose a model first"
        if image is None:
            return "", pd.DataFrame(columns=["class", "score"]), "error: upload an image or draw a sample"
        label, scores = predict(model, image)
        return label, pd.DataFrame(scores), ""

    def on_sample(dataset):
        out, err = _one_line(lambda: sample_image(dataset))
        return (out[0], f"a {out[1]} from {dataset}'s test split") if out else (None, err)

    def on_publish(model, name):
        if model is None:
            return "error: compose a model first"
        _, err = _one_line(lambda: model.push_to_hub(validate_repo_id(name.strip()), target))
        return err or f"published `{name.strip()}` at `{model.pushed_revision[:12]}` to the {target.name} hub"

    with gr.Blocks(title="hubmod") as page:
        gr.Markdown(f"# hubmod\nModules on the **{target.name}** hub: find them by class, compose them, try them.")
        model = gr.State(None)
        with gr.Tab("Find"):
            classes = gr.Textbox(label="Classes (comma-separated)", placeholder="Sneaker, Bag", elem_id="find-classes")
            find_button = gr.Button("Find", elem_id="find-button")
            find_error = gr.Markdown(elem_id="find-error")
            table = gr.Dataframe(headers=FIND_COLUMNS, interactive=False, elem_id="find-results")
            card_repo = gr.Textbox(label="Module repo", placeholder="alice/vgg-fmnist-bag", elem_id="card-repo")
            card_button = gr.Button("Show card", elem_id="card-button")
            chart = gr.BarPlot(x="group", y="channels", title="channels kept per group", elem_id="card-chart")
            card = gr.Markdown(elem_id="card-markdown")
        with gr.Tab("Compose and try"):
            compose_text = gr.Textbox(label="Classes, or module repos (comma-separated)", elem_id="compose-classes",
                                      placeholder="Sneaker, Bag")
            with gr.Row():
                fit = gr.Textbox(label="Fit on dataset (optional)", placeholder="fashion-mnist", elem_id="compose-fit")
                shots = gr.Number(value=10, precision=0, label="Images per class", elem_id="compose-shots")
                candidates = gr.Number(value=5, precision=0, label="Candidates per class", elem_id="compose-candidates")
            compose_button = gr.Button("Compose", elem_id="compose-button")
            summary = gr.Markdown(elem_id="compose-status")
            with gr.Row():
                image = gr.Image(type="numpy", label="Image", height=240, elem_id="predict-image")
                with gr.Column():
                    sample_set = gr.Textbox(value="fashion-mnist", label="Sample from dataset",
                                            elem_id="sample-dataset")
                    sample_button = gr.Button("Draw a sample", elem_id="sample-button")
                    sample_note = gr.Markdown(elem_id="sample-note")
            predict_button = gr.Button("Predict", elem_id="predict-button")
            predicted = gr.Textbox(label="Predicted class", interactive=False, elem_id="predict-label")
            predict_error = gr.Markdown(elem_id="predict-error")
            bars = gr.BarPlot(x="class", y="score", title="every module's score", elem_id="predict-scores")
            publish_name = gr.Textbox(label="Publish as (namespace/name)", elem_id="publish-name")
            publish_button = gr.Button("Publish", elem_id="publish-button")
            publish_status = gr.Markdown(elem_id="publish-status")
        find_button.click(on_find, classes, [table, find_error])
        card_button.click(on_card, card_repo, [card, chart])
        compose_button.click(on_compose, [compose_text, fit, shots, candidates], [model, summary])
        sample_button.click(on_sample, sample_set, [image, sample_note])
        predict_button.click(on_predict, [model, image], [predicted, bars, predict_error])
        publish_button.click(on_publish, [model, publish_name], publish_status)
    return page


def check_port(host: str, port: int) -> None:
    """One line if ``port`` on ``host`` cannot be listened on (in use, or not an address of this machine)."""
    if type(port) is not int or not 0 < port < 65536:
        raise HubmodError(f"--port must be a port number from 1 to 65535 (got {port!r})")
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
        try:
            s.bind((host, port))
        except OSError as e:
            raise HubmodError(f"cannot listen on {host}:{port} ({e.strerror or e}): choose another with --port "
                              "or --host") from None


def serve(hub: str | Hub | None = None, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT,
          block: bool = True):
    """Start the page on ``host``:``port`` (loopback by default); returns the launched Blocks."""
    check_port(host, port)
    page = build_app(hub)
    page.launch(server_name=host, server_port=port, prevent_thread_lock=not block, share=False, quiet=True)
    return page
