"""What the README and the package's own help promise a newcomer, checked as they would try it."""

import subprocess
import sys

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
