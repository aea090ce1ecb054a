"""The hubmod command line, driven through typer's test runner on a tiny real parent."""

import dataclasses
import json

import pytest
from conftest import TINY_SPLIT
from typer.testing import CliRunner

from hubmod import ComposedClassifier
from hubmod.cli import app
from hubmod.hub import LocalHub

runner = CliRunner()
TINY_P = [arg for k, v in TINY_SPLIT.items() for arg in ("-p", f"{k}={v}")]


def _run(*args, code=0):
    result = runner.invoke(app, list(args))
    assert result.exit_code == code, (result.output, result.stderr, result.exception)
    return result


def test_help_teaches():
    out = _run("--help").output
    for cmd in ("split", "compose", "eval", "inspect", "methods", "patch", "export", "replace"):
        assert cmd in out
    split_help = _run("split", "--help").output
    assert "--dataset" in split_help and "--repo-prefix" in split_help and "--resume" in split_help
    export_help = _run("export", "--help").output
    assert "--input-size" in export_help and "onnxruntime" in export_help
    replace_help = _run("replace", "--help").output
    assert "--class" in replace_help and "--with" in replace_help and "pinned" in replace_help
    patch_help = _run("patch", "--help").output
    assert "--module" in patch_help and "--strategy" in patch_help and "--output" in patch_help
    assert "--calibration" in patch_help  # the same word as compose's, with --strategy kept as the older name
    listing = json.loads(_run("methods", "--json").stdout)
    assert set(listing) == {"gradsplitter", "cnnsplitter", "activation"}
    grad = listing["gradsplitter"]
    assert grad["options"]["train_per_class"] == 100 and "paper" in grad["presets"]
    methods = _run("methods").output
    assert "gradsplitter" in methods and "cnnsplitter" in methods and "population=" in methods
    from hubmod.splitters import METHODS

    option_lines = [line.strip() for line in methods.splitlines() if line.strip().startswith("-p ")]
    assert len(option_lines) == sum(len(dataclasses.fields(m.config_class)) + len(m.config_class.presets)
                                    for m in METHODS.values())
    assert any(line.startswith("-p alpha=1.0 (") and "higher gives smaller modules" in line for line in option_lines)
    fast = next(line for line in option_lines if line.startswith("-p preset=fast ("))
    assert "distill_batch_size=256" in fast  # a preset shows the options it sets
    assert "preset=paper" in split_help  # help names the other presets (the default is the best measured)


@pytest.fixture
def published_parent(tiny_parent_dirs):
    LocalHub().push_folder("cli/vgg", tiny_parent_dirs["vgg"], "parent")
    return "cli/vgg"


def test_split_compose_eval_inspect(published_parent, fmnist_test, tmp_path):
    res = _run("split", published_parent, "--dataset", "fashion-mnist", "--json", "--seed", "1",
               "--classes", "Sneaker,Bag,Ankle boot", *TINY_P)
    report = json.loads(res.stdout)
    assert len(report["rows"]) == 3 and report["index_repo"] == "cli/vgg"
    assert report["composed_accuracy"] > 0.6  # 0.91-0.93 for tiny parents of three seeds; chance 0.33

    res = _run("compose", "cli/vgg:Sneaker", "cli/vgg:Bag", "cli/vgg-ankle-boot", "--output", "cli/shoes-bags",
               "--json")
    info = json.loads(res.stdout)
    assert info["classes"] == ["Sneaker", "Bag", "Ankle boot"] and len(info["revision"]) == 40

    res = _run("replace", "cli/shoes-bags", "--class", "bag", "--with", "cli/vgg-bag", "--output", "cli/shoes-bags-2",
               "--json")
    swapped = json.loads(res.stdout)
    assert swapped["classes"] == info["classes"] and len(swapped["revision"]) == 40
    assert [m["repo_id"] for m in swapped["modules"]] == ["cli/vgg-sneaker", "cli/vgg-bag", "cli/vgg-ankle-boot"]
    res = _run("replace", "cli/shoes-bags", "--class", "Bag", "--with", "cli/vgg:Sneaker", "--output", "cli/no",
               code=1)
    assert "not 'Bag'" in res.stderr and not LocalHub().repo_exists("cli/no")

    # no labels: a flat folder of photos of the task; an adapted composition is only adapted again on replace
    from PIL import Image

    photos = tmp_path / "photos"
    photos.mkdir()
    shoes = fmnist_test.for_classes(["Sneaker", "Bag", "Ankle boot"], "photos")
    for i in range(30):
        Image.fromarray(shoes.images[i, 0].numpy()).save(photos / f"{i}.png")
    res = _run("compose", "cli/vgg:Sneaker", "cli/vgg:Bag", "cli/vgg-ankle-boot", "--adapt", str(photos),
               "--output", "cli/adapted", "--json")
    adapted = json.loads(res.stdout)["fit"]
    assert adapted["method"] == "adapt" and adapted["images"] == 30 and adapted["combiner"] == "affine"
    card = (LocalHub().snapshot("cli/adapted").path / "README.md").read_text()
    assert "## Adapted to unlabelled images" in card and f"--adapt {photos}" in card
    res = _run("replace", "cli/adapted", "--class", "Bag", "--with", "cli/vgg-bag", "--output", "cli/no", code=1)
    assert f"--adapt {photos}" in res.stderr and not LocalHub().repo_exists("cli/no")
    res = _run("replace", "cli/adapted", "--class", "Bag", "--with", "cli/vgg-bag", "--adapt", str(photos),
               "--output", "cli/adapted-2", "--json")
    assert json.loads(res.stdout)["classes"] == ["Sneaker", "Bag", "Ankle boot"]
    assert ComposedClassifier.from_pretrained("cli/adapted-2").fit_info["method"] == "adapt"

    res = _run("eval", "cli/shoes-bags", "--dataset", "fashion-mnist", "--json")
    ev = json.loads(res.stdout)
    assert ev["n"] == 3000 and 0.5 < ev["accuracy"] <= 1
    assert set(ev["per_class"]) == {"Sneaker", "Bag", "Ankle boot"}
    assert {"precision", "recall", "f1"} <= set(ev["per_class"]["Bag"])

    res = _run("inspect", "cli/vgg-sneaker", "--json")
    info = json.loads(res.stdout)
    assert info["kind"] == "class module" and info["method"]["name"] == "gradsplitter"
    res = _run("inspect", "cli/vgg")
    assert "parent" in res.output and "split_index" in res.output
    assert "Sneaker" in _run("inspect", "cli/shoes-bags").output


@pytest.mark.parametrize("args,code,needle", [
    (["compose", "cli/vgg:Penguin"], 1, "split it first with `hubmod split cli/vgg"),
    (["compose", "nobody/none:Bag"], 3, "repo nobody/none not found"),
    (["split", "cli/vgg", "--dataset", "fashion-mnist", "-p", "bogus=1"], 1, "unknown option(s) bogus"),
    (["split", "cli/vgg", "--dataset", "fashion-mnist", "-p", "preset=turbo"], 1, "unknown preset 'turbo'"),
    (["split", "cli/vgg", "--dataset", "fashion-mnist", "--classes", "Penguin"], 3, "unknown class"),
    (["split", "cli/vgg", "--dataset", "./no/such/data"], 3, "does not exist"),
    (["eval", "cli/vgg@0000000", "--dataset", "fashion-mnist"], 3, "revision '0000000' not found"),
    (["split", "cli/vgg", "--dataset", "fashion-mnist", "--hub", "ftp"], 1, "unknown hub"),
    (["compose", "cli/vgg:Bag", "--fit", "fashion-mnist", "--adapt", "./photos"], 1, "not both"),
])
def test_bad_input_is_one_line(published_parent, args, code, needle):
    res = _run(*args, code=code)
    err = res.stderr.strip()
    assert err.startswith("error: ") and needle in err and "\n" not in err, err
    assert "Traceback" not in res.output


def test_failed_split_publishes_nothing(published_parent):
    before = sorted(p.name for p in (LocalHub().root / "models" / "cli").iterdir())
    _run("split", "cli/vgg", "--dataset", "fashion-mnist", "--classes", "Sneaker,Penguin", code=3)
    assert sorted(p.name for p in (LocalHub().root / "models" / "cli").iterdir()) == before


def test_dataset_without_the_needed_classes(published_parent, fmnist_test, tmp_path):
    from datasets import ClassLabel, Dataset, Features, Image

    three = fmnist_test.for_classes(["T-shirt/top", "Trouser", "Pullover"], "test").subset(list(range(30)))
    feats = Features({"image": Image(), "label": ClassLabel(names=three.class_names)})
    Dataset.from_dict({"image": [im[0].numpy() for im in three.images], "label": three.labels.tolist()},
                      features=feats).to_parquet(str(tmp_path / "three.parquet"))
    res = _run("split", "cli/vgg", "--dataset", str(tmp_path / "three.parquet"), code=1)
    assert "has no class 'Dress', 'Coat'" in res.stderr and "\n" not in res.stderr.strip()
    res = _run("eval", "cli/vgg", "--dataset", str(tmp_path / "three.parquet"), "--split", "train", code=1)
    assert "has no class" in res.stderr
