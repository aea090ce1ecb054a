"""What the README and the package's own help promise a newcomer, checked as they would try it."""

import subprocess
import sys
from pathlib import Path

import pytest

import hubmod


def test_the_package_lists_its_api():
    listed = dir(hubmod)
    assert all(name in listed for name in hubmod.__all__)
    assert all(f"``{name}" in hubmod.__doc__ for name in ("split(", "compose(", "patch(", "replace(", "ClassModule"))


def test_importing_hubmod_archs_registers_the_vgg_in_timm():
    code = ("import timm, hubmod.archs; m = timm.create_model('hubmod_vgg', num_classes=3, in_chans=1); "
            "print(type(m).__name__)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip()


def test_exit_codes_follow_one_table():
    from hubmod.errors import HubAccessError, HubmodError, InvalidRepoError, NotFoundError

    assert [e.exit_code for e in (HubmodError, NotFoundError, InvalidRepoError, HubAccessError)] == [1, 3, 4, 5]
    readme = (Path(__file__).parent.parent / "docs" / "cli.md").read_text()
    for code, meaning in ((1, "bad input"), (2, "usage error"), (3, "not found"), (4, "damaged repo"),
                          (5, "hub failure"), (130, "interrupted")):
        assert f"| {code} | {meaning}" in readme, (code, meaning)


def test_a_typo_gets_a_did_you_mean(monkeypatch):
    from hubmod.data import load_images
    from hubmod.errors import NotFoundError
    from hubmod.refs import match_class

    with pytest.raises(NotFoundError, match="did you mean 'Sneaker'"):
        match_class("sneakers", ["Sneaker", "Bag"], "the model")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(NotFoundError, match="did you mean 'fashion-mnist'"):
        load_images("fashion-mnst", "train")


def test_split_uses_the_dataset_the_parent_names(tiny_parent_dirs):
    """The design's own `hubmod split SOURCE`: the parent's card names its training data."""
    from conftest import TINY_SPLIT
    from typer.testing import CliRunner

    from hubmod.cli import app

    params = [a for k, v in {**TINY_SPLIT, "distill_epochs": 0}.items() for a in ("-p", f"{k}={v}")]
    result = CliRunner().invoke(app, ["split", str(tiny_parent_dirs["vgg"]), "--classes", "Trouser,Bag",
                                      "--no-publish", "--no-progress", *params])
    assert result.exit_code == 0, (result.stdout, result.stderr)
    assert "splitting on fashion-mnist" in result.stderr


@pytest.mark.parametrize("named", [None, "/etc/passwd", "../../secrets", "https://evil.example/x", "a/b/../c"])
def test_a_parent_that_names_no_usable_dataset_asks_for_one(named, tiny_parent_dirs, tmp_path):
    import shutil

    from hubmod.hub import dir_snapshot
    from hubmod.split_pipeline import dataset_of
    from hubmod.trained_on import trained_on

    parent = tmp_path / "parent"
    shutil.copytree(tiny_parent_dirs["vgg"], parent)
    card = "---\n" + (f"datasets:\n- {named}\n" if named else "license: mit\n") + "---\n# a parent\n"
    (parent / "README.md").write_text(card)
    snap = dir_snapshot(parent)
    assert trained_on(snap) is None  # never a path or URL from a repo
    with pytest.raises(hubmod.HubmodError, match="does not say which dataset") as err:
        dataset_of(snap, "./parent")
    assert "dataset='fashion-mnist'" in str(err.value) and "--" not in str(err.value)  # Python words in Python
    from hubmod.errors import cli_messages

    with cli_messages(), pytest.raises(hubmod.HubmodError) as err:
        dataset_of(snap, "./parent")
    assert "--dataset fashion-mnist" in str(err.value)  # and the command's flags in the command


def test_the_readme_results_table_is_the_one_benchmarks_md_generates():
    run = subprocess.run([sys.executable, "benchmarks/summary.py", "--check"], cwd=Path(__file__).parent.parent,
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr


def test_benchmarks_md_is_what_its_saved_results_render():
    run = subprocess.run([sys.executable, "benchmarks/render_all.py", "--check"], cwd=Path(__file__).parent.parent,
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-2000:]
    assert "rebuilt from saved results" in run.stdout


def test_benchmarks_md_prose_is_wrapped_and_wrapping_it_again_changes_nothing():
    import importlib.util

    spec = importlib.util.spec_from_file_location("bench_common", Path(__file__).parent.parent / "benchmarks" /
                                                  "common.py")
    common = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(common)
    table = "| a | " + "b " * 40 + "|"
    heading = "## " + "Title " * 30
    text = "\n".join(["Command: `python benchmarks/x.py --only some-part --and more options here`  ",
                      "Machine: " + "word " * 30 + " ", table, "- " + "item words " * 12, heading])
    lines = common.wrap_prose(text, width=40).split("\n")
    assert lines[:2] == ["Command:", "`python benchmarks/x.py --only some-part --and more options here`  "]
    machine = lines[2 : lines.index(table)]  # wrapped, its hard break ("  ") kept at the end only
    assert len(machine) > 1 and machine[-1].endswith("word  ") and not any(m.endswith("  ") for m in machine[:-1])
    assert lines[-1] == heading  # tables and headings are never wrapped
    items = lines[lines.index(table) + 1 : -1]
    assert len(items) > 1 and items[0].startswith("- item")
    assert all(line.startswith("  ") and line[2] != " " for line in items[1:])  # a list item's continuation
    assert all(len(line.rstrip()) <= 40 for line in machine + items)
    assert common.wrap_prose("\n".join(lines), width=40) == "\n".join(lines)


def test_every_relative_link_in_the_readme_and_docs_resolves():
    import re

    root = Path(__file__).parent.parent
    broken = []
    for page in [root / "README.md", *sorted((root / "docs").rglob("*.md"))]:
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", page.read_text()):
            if not target.startswith(("http://", "https://", "mailto:")) and not (page.parent / target).exists():
                broken.append(f"{page.relative_to(root)} -> {target}")
    assert not broken, broken


def test_messages_name_python_arguments_in_python_and_flags_in_the_cli():
    from hubmod.errors import HubmodError, cli_messages
    from hubmod.fitting import draw_fit_images

    with pytest.raises(HubmodError, match="shots= must be a whole number"):
        draw_fit_images([], "fashion-mnist", 0)
    with cli_messages(), pytest.raises(HubmodError, match="--shots must be a whole number"):
        draw_fit_images([], "fashion-mnist", 0)


def test_each_benchmark_parent_name_stands_for_one_training_recipe(monkeypatch):
    """Benchmarks reuse a parent already on the benchmark hub by name, so two scripts asking for one name with
    different training would silently share whichever was trained first; the saved results must agree too."""
    import json

    bench = Path(__file__).parent.parent / "benchmarks"
    monkeypatch.syspath_prepend(str(bench))
    import activation_fmnist
    import families_fmnist
    import reuse_fmnist
    import split_cost
    import split_fmnist
    import split_scaling
    import split_size_curve
    import zero_shot_fmnist

    asked = [*split_fmnist.PARENTS.items(), *split_fmnist.DISJOINT.items(), *split_fmnist.WIDE.items(),
             (split_cost.HELD_OUT_REPO, split_cost.HELD_OUT_ARGS), *split_size_curve.PARENTS.items(),
             *((repo, args) for repo, args, _ in families_fmnist.FAMILIES.values()),
             *split_scaling.SIZES.values(), split_scaling.GROUP_PARENT,
             *(spec for pair in reuse_fmnist.PAIRS.values() for spec in pair),
             (activation_fmnist.WEAK, activation_fmnist.WEAK_ARGS),
             *(spec for seed in zero_shot_fmnist.TRAININGS for spec in zero_shot_fmnist.trained_pair(seed))]
    recipes: dict[str, set[tuple[str, ...]]] = {}
    for repo, args in asked:
        recipes.setdefault(repo, set()).add(tuple(args))
    assert {repo: r for repo, r in recipes.items() if len(r) > 1} == {}
    saved = json.loads((bench / "results" / "parents.json").read_text())
    assert {repo: saved[repo]["args"] for repo in recipes if repo in saved
            and tuple(saved[repo]["args"]) not in recipes[repo]} == {}
