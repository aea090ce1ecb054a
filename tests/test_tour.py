"""The README's two-minute tour, run command by command as written, with small budgets added.

Each command is taken from the README's tour block exactly; the test only appends options that make
it small (tiny widths, few images, short searches), so a command that does not work as written, or a
repo the tour uses before creating it, fails here.
"""

import os
import re
import shlex
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from conftest import TINY_SPLIT, free_port

ROOT = Path(__file__).parent.parent
SMALL = {
    "train_parent": {"resnet18": ["--per-class", "100", "--epochs", "1",
                                  "--model-args", '{"channels": [8, 16, 24, 32], "stem_width": 8}'],
                     "hubmod_vgg": ["--per-class", "100", "--model-args", '{"cfg": [8, "M", 16, "M"]}']},
    "gradsplitter": {**TINY_SPLIT, "distill_epochs": 0},
    "cnnsplitter": {"train_per_class": 30, "val_per_class": 20, "fitness_per_class": 5, "population": 4,
                    "generations": 1, "offspring": 2, "sensitivity_steps": 2},
    "activation": {"train_per_class": 30, "val_per_class": 20},
}


def tour_commands() -> list[str]:
    text = (ROOT / "README.md").read_text()
    block = re.search(r"## A two-minute tour\s+```bash\n(.*?)```", text, re.S).group(1)
    joined = block.replace("\\\n", " ")
    return [line.strip() for line in joined.splitlines() if line.strip() and not line.strip().startswith("#")]


def smaller(command: str) -> list[str]:
    args = shlex.split(command.split("#")[0])
    if args[:2] == ["python", "examples/train_parent.py"]:
        arch = args[args.index("--arch") + 1]
        return [sys.executable, str(ROOT / "examples" / "train_parent.py"), *args[2:], *SMALL["train_parent"][arch]]
    if args[:2] == ["hubmod", "split"]:
        method = args[args.index("--method") + 1] if "--method" in args else "gradsplitter"
        params = [a for k, v in SMALL[method].items() for a in ("-p", f"{k}={v}")]
        return [sys.executable, "-m", "hubmod.cli", *args[1:], "--no-progress", *params]
    if args[0] == "hubmod":
        return [sys.executable, "-m", "hubmod.cli", *args[1:]]
    raise AssertionError(f"the tour runs a command this test does not know: {command}")


def test_the_tour_has_the_commands_it_teaches():
    commands = tour_commands()
    assert commands[0] == "source .venv/bin/activate" and commands[1].startswith("export HUBMOD_HOME=")
    made, used = set(), []
    for command in commands[2:]:
        args = shlex.split(command.split("#")[0])
        repos = [a.split(":")[0] for a in args if re.fullmatch(r"me/[\w.-]+(:[\w /-]+)?", a)]
        for flag in ("--repo", "--output"):
            if flag in args:
                made.add(args[args.index(flag) + 1])
        if args[:2] == ["hubmod", "split"]:
            prefix = args[args.index("--repo-prefix") + 1] if "--repo-prefix" in args else args[2]
            made.add(prefix)
        used += [r for r in repos if r not in made and not r.startswith(tuple(m + "-" for m in made))]
    assert not used, f"the tour uses repos it never creates: {used}"


def _serves_until_ctrl_c(command: list[str], env: dict) -> None:
    """Run a command that serves a web page (``hubmod app``) on a free port: the page must answer, and Ctrl-C
    (SIGINT, as its help says) must stop it cleanly."""
    port = free_port()
    # Ctrl-C as in a terminal, even when this test runs where SIGINT is ignored (a nohup'd or background shell)
    server = subprocess.Popen([*command, "--port", str(port)], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True,
                              preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        end = time.monotonic() + 300
        while True:
            assert server.poll() is None, f"{shlex.join(command)} exited early: {server.stderr.read()[-2000:]}"
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=10) as page:
                    assert page.status == 200
                    break
            except OSError:
                assert time.monotonic() < end, f"{shlex.join(command)} never served its page"
                time.sleep(0.5)
        server.send_signal(signal.SIGINT)
        _, err = server.communicate(timeout=120)
    finally:
        if server.poll() is None:
            server.kill()
            server.communicate()
    assert server.returncode == 0 and "Traceback" not in err, err[-2000:]


@pytest.mark.slow
def test_the_tour_runs_as_written(tmp_path):
    env = {**os.environ, "HUBMOD_HOME": str(tmp_path / "tour"), "HF_HUB_OFFLINE": "1"}
    for command in tour_commands()[2:]:
        if shlex.split(command)[:2] == ["hubmod", "app"]:  # serves until stopped
            _serves_until_ctrl_c(smaller(command), env)
            continue
        run = subprocess.run(smaller(command), cwd=ROOT, env=env, capture_output=True, text=True, timeout=1800)
        assert run.returncode == 0, f"{command}\n{run.stderr[-2000:]}"
        assert "Traceback" not in run.stderr, command
