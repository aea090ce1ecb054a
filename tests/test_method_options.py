"""Every registered method declares each option once, with help and the values it allows."""

import dataclasses
import re

import pytest

from hubmod.errors import HubmodError
from hubmod.splitters import METHODS

# values of each type to try against a rule, so each rule is shown refusing something
CANDIDATES = {int: [-1, 0, 1, 2, 10**9], float: [-1.0, -0.5, 0.0, 0.5, 1.0, 1.5, 1e9], str: ["nope"], bool: []}


@pytest.mark.parametrize("method", list(METHODS))
def test_every_option_has_help_and_its_default_and_presets_pass_its_rules(method):
    config = METHODS[method].config_class
    assert config.method_name == method
    for f in dataclasses.fields(config):
        assert f.metadata.get("help"), f"{method} option {f.name} has no help"
        rule = f.metadata.get("rule")
        assert rule is None or rule.holds(f.default), f"{method} default {f.name}={f.default!r} breaks its rule"
    config.from_options({}, method)
    for preset in config.presets:
        config.from_options({"preset": preset}, method)


@pytest.mark.parametrize("method", list(METHODS))
def test_a_value_a_rule_refuses_is_one_line_naming_that_option(method):
    config = METHODS[method].config_class
    names = [f.name for f in dataclasses.fields(config)]
    checked = 0
    for f in dataclasses.fields(config):
        rule = f.metadata.get("rule")
        bad = next((v for v in CANDIDATES[type(f.default)] if rule is not None and not rule.holds(v)), None)
        if bad is None:
            continue
        with pytest.raises(HubmodError) as err:
            config.from_options({f.name: str(bad)}, method)
        text = str(err.value)
        assert "\n" not in text and f"{f.name}=" in text and rule.allowed in text and f"(default {f.default!r})" in text
        assert not [n for n in names if n != f.name and re.search(rf"\b{n}=", text)], text
        checked += 1
    assert checked >= 2  # train_per_class and val_per_class at least
