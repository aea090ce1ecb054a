"""`hubmod --help` and every command's help, rendered as a user sees them at narrow and wide terminals."""

import re

import pytest
from typer.testing import CliRunner

from hubmod import __version__
from hubmod.cli import app

COMMANDS = ("split", "compose", "patch", "replace", "eval", "inspect", "export", "methods", "find", "app")
ARGUMENTS = {"split": "SOURCE", "compose": "REF...", "patch": "SOURCE", "replace": "MODEL", "eval": "SOURCE",
             "inspect": "SOURCE", "export": "SOURCE", "find": "CLASS..."}
TYPE_TAG = re.compile(r"<(str|int|float|bool|list\[[a-z]+\]|path|[a-z_]+ range)>")


def _help(args: list[str], columns: int) -> str:
    result = CliRunner().invoke(app, [*args, "--help"], env={"COLUMNS": str(columns), "TERM": "dumb"})
    assert result.exit_code == 0, result.output
    return result.output


@pytest.mark.parametrize("columns", [60, 120])
def test_the_app_help_lists_every_source_form(columns):
    out = _help([], columns)
    flat = " ".join(out.split())
    for form in ("'ns/name'", "'ns/name@rev'", "'hf-hub:ns/name'", "./", "../", "~/"):
        assert form in flat, form
    assert all(cmd in out for cmd in COMMANDS)
    assert not TYPE_TAG.search(out)


@pytest.mark.parametrize("columns", [60, 120])
@pytest.mark.parametrize("command", COMMANDS)
def test_each_command_help_shows_metavars_and_no_type_tags(command, columns):
    out = _help([command], columns)
    usage = out.splitlines()[0]
    assert usage.startswith(f"Usage: hubmod {command} [OPTIONS]")
    if command in ARGUMENTS:
        assert usage.endswith(" " + ARGUMENTS[command]), usage
        assert "{" not in usage
    assert not TYPE_TAG.search(out), TYPE_TAG.search(out).group()
    prose = [line for line in out.splitlines() if not line.strip().startswith("hubmod ")]  # examples stay whole
    assert all(len(line) <= max(columns, 80) for line in prose), "a help line is wider than the terminal"
    for line in out.splitlines():  # flags that take no value show none
        words = line.split()
        if words and words[0].rstrip(",") in ("--json", "--private", "--resume", "--help", "--version",
                                                    "--from-hub"):
            assert len(words) == 1 or not words[1].isupper(), line


def test_examples_are_shown_unwrapped():
    out = _help(["compose"], 60)
    assert "  hubmod compose demo/resnet18-fmnist:Sneaker demo/vgg-fmnist:Bag --output me/shoes-vs-bags" in out


def test_version():
    result = CliRunner().invoke(app, ["--version"])
    assert result.exit_code == 0 and result.output.strip() == f"hubmod {__version__}"


@pytest.mark.parametrize("option,needle", [
    ("alpha=-1", "alpha=-1.0 must be at least 0 (default 1.0)"),
    ("penalty=flops", "penalty='flops' must be one of: kernels, macs, both (default 'kernels')"),
    ("head_input=feature", "head_input='feature' must be one of: features, logits (default 'features')"),
])
def test_a_bad_option_value_names_only_that_option(option, needle, tmp_path):
    result = CliRunner().invoke(app, ["split", str(tmp_path), "--dataset", "fashion-mnist", "-p", option])
    assert result.exit_code != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0], result.stderr
    assert len(lines[0]) < 200 and "mask_lr" not in lines[0]


def test_the_default_hub_rule_reads_the_same_in_help_and_code():
    from hubmod.hub import HUB_RULE

    out = " ".join(_help(["compose"], 200).split())
    assert "Default: $HUBMOD_HUB, else 'hf' when HF_ENDPOINT or HF_TOKEN is set, else 'local'." in out
    assert HUB_RULE.startswith("--hub, else $HUBMOD_HUB, else the Hugging Face Hub when HF_ENDPOINT or HF_TOKEN")


@pytest.mark.parametrize("env,needle", [
    ({}, "hub: the embedded hub in"),
    ({"HF_TOKEN": "hf_x"}, "hub: hub 'hf' (HF_TOKEN is set; choose with --hub)"),
])
def test_a_command_says_which_hub_it_used_when_none_was_named(env, needle, tiny_parent_dirs, monkeypatch):
    for var in ("HUBMOD_HUB", "HF_TOKEN", "HF_ENDPOINT"):
        monkeypatch.delenv(var, raising=False)
    result = CliRunner().invoke(app, ["inspect", str(tiny_parent_dirs["vgg"])], env=env)
    assert result.exit_code == 0 and needle in result.stderr, result.stderr
    named = CliRunner().invoke(app, ["inspect", str(tiny_parent_dirs["vgg"]), "--hub", "local"], env=env)
    assert named.exit_code == 0 and "hub:" not in named.stderr


def test_input_errors_that_need_no_model_come_before_torch_is_imported(tmp_path):
    import subprocess
    import sys

    from hubmod.cli import METHOD_NAMES
    from hubmod.splitters import METHODS

    assert tuple(METHODS) == METHOD_NAMES
    code = ("import sys; from hubmod.cli import main; sys.argv = ['hubmod'] + sys.argv[1:]\n"
            "try:\n    main()\nexcept SystemExit as e:\n    print('torch' in sys.modules, e.code)")
    for args, needle in ((["split", "./nowhere"], "directory ./nowhere does not exist"),
                         (["split", str(tmp_path), "--method", "magic"], "unknown method 'magic'"),
                         (["split", str(tmp_path), "-p", "alpha"], "bad -p 'alpha'"),
                         (["eval", "./nowhere", "-d", "fashion-mnist"], "directory ./nowhere does not exist")):
        run = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=120,
                             cwd=tmp_path)
        assert needle in run.stderr and run.stdout.split()[0] == "False", (args, run.stdout, run.stderr)
