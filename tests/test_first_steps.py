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
    readme = (Path(__file__).parent.parent / "README.md").read_text()
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
