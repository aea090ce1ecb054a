"""A split killed while publishing leaves complete repos or none, and `--resume` finishes the rest.

The kill is real: the CLI runs in a subprocess whose hub write is wrapped to call ``os._exit`` at
a chosen point (before a push, or inside one just before the branch pointer moves), so nothing
gets to clean up.
"""

import json
import os
import subprocess
import sys

import pytest
from conftest import TINY_SPLIT

from hubmod import ClassModule
from hubmod.hub import LocalHub
from hubmod.split_index import SPLIT_INDEX

CLASSES = ["Trouser", "Bag", "Sneaker"]
REPOS = ["kill/vgg-trouser", "kill/vgg-bag", "kill/vgg-sneaker"]

KILLER = """
import os, sys
import hubmod.hub.local as hub

where, after = os.environ["KILL_AT"], int(os.environ["KILL_AFTER"])
calls = {"n": 0}
if where == "push":  # before the (after+1)-th push starts
    original = hub.LocalHub.push_folder
    def push_folder(self, *a, **k):
        calls["n"] += 1
        if calls["n"] > after:
            os._exit(9)
        return original(self, *a, **k)
    hub.LocalHub.push_folder = push_folder
else:  # inside a push: commit directory written, branch pointer not yet moved
    original = hub._atomic_write
    def atomic_write(path, text):
        if path.name == "refs.json":
            calls["n"] += 1
            if calls["n"] > after:
                os._exit(9)
        return original(path, text)
    hub._atomic_write = atomic_write
from hubmod.cli import main
sys.argv = ["hubmod", *sys.argv[1:]]
main()
"""


def _split(parent: str, dataset: str, *extra: str, kill: tuple[str, int] | None = None) -> subprocess.CompletedProcess:
    args = ["split", parent, "--dataset", dataset, "--classes", ",".join(CLASSES), "--repo-prefix",
            "kill/vgg", "--json", "--no-progress", *extra]
    for k, v in {**TINY_SPLIT, "max_cycles": 1, "distill_epochs": 0}.items():  # publishing is what is tested
        args += ["-p", f"{k}={v}"]
    env = dict(os.environ)
    if kill:
        env.update(KILL_AT=kill[0], KILL_AFTER=str(kill[1]))
        return subprocess.run([sys.executable, "-c", KILLER, *args], capture_output=True, text=True, env=env,
                              timeout=600)
    return subprocess.run([sys.executable, "-m", "hubmod.cli", *args], capture_output=True, text=True, env=env,
                          timeout=600)


def _complete_or_absent(hub: LocalHub) -> dict[str, str]:
    """Every module repo that exists loads completely; returns {repo: sha} of those."""
    present = {}
    for repo in REPOS:
        if hub.repo_exists(repo):
            module = ClassModule.from_pretrained(repo)
            assert module.class_name == CLASSES[REPOS.index(repo)]
            present[repo] = module.source.sha
    return present


# a kill between a push and its branch pointer exercises the same resume; it runs with -m slow to keep the
# default suite within its time budget
@pytest.mark.parametrize("kill", [("push", 1), pytest.param(("pointer", 2), marks=pytest.mark.slow)])
def test_killed_split_leaves_whole_repos_and_resume_finishes(tiny_parent_dirs, small_fmnist_dir, kill):
    hub = LocalHub()
    hub.push_folder("kill/vgg", tiny_parent_dirs["vgg"], "parent")
    for repo in REPOS:
        assert not hub.repo_exists(repo)
    died = _split("kill/vgg", str(small_fmnist_dir), kill=kill)
    assert died.returncode == 9, died.stderr[-2000:]
    before = _complete_or_absent(hub)
    assert len(before) == kill[1]  # the pushes finished before the kill, and nothing of the one cut short
    assert SPLIT_INDEX not in os.listdir(hub.snapshot("kill/vgg").path)  # no index for a partial split

    done = _split("kill/vgg", str(small_fmnist_dir), "--resume")
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads(done.stdout)
    assert report["seconds"]["search"] == 0.0  # the finished search was reused, not redone
    after = _complete_or_absent(hub)
    assert set(after) == set(REPOS)
    assert all(after[r] == sha for r, sha in before.items())  # done classes were not published again
    index = json.loads((hub.snapshot("kill/vgg").path / SPLIT_INDEX).read_text())
    assert {m["repo_id"]: m["revision"] for m in index["modules"]} == after
