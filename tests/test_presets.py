"""Presets: named option sets a benchmark measured, which options given beside them override."""

from pathlib import Path

import pytest

from hubmod.errors import HubmodError
from hubmod.splitters.gradsplitter import GradSplitterConfig


def test_the_fast_preset_is_the_setting_benchmarked_under_its_name(monkeypatch):
    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parent.parent / "benchmarks"))
    from split_cost import LABELED  # the options the README and BENCHMARKS.md report for labels-b256-ho

    cfg = GradSplitterConfig.from_options({"preset": "fast"}, "gradsplitter")
    assert {k: getattr(cfg, k) for k in LABELED["labels-b256-ho"]} == LABELED["labels-b256-ho"]
    assert "labels-b256-ho" in GradSplitterConfig.preset_docs["fast"]


def test_the_small_preset_is_the_setting_benchmarked_for_it(monkeypatch):
    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parent.parent / "benchmarks"))
    from split_size_curve import SETTINGS, SMALL  # the candidate split_size_curve.py measured as the small preset

    cfg = GradSplitterConfig.from_options({"preset": "small"}, "gradsplitter")
    fast = GradSplitterConfig.from_options({"preset": "fast"}, "gradsplitter")
    assert {k: getattr(cfg, k) for k in SETTINGS[SMALL]} == SETTINGS[SMALL]
    changed = {k for k in GradSplitterConfig.presets["small"] if getattr(cfg, k) != getattr(fast, k)}
    assert changed == set(SETTINGS[SMALL])  # the candidate is the default with exactly these changes
    assert "split-size-curve" in GradSplitterConfig.preset_docs["small"]


def test_options_beside_a_preset_override_it():
    cfg = GradSplitterConfig.from_options({"preset": "fast", "distill_epochs": "1"}, "gradsplitter")
    assert cfg.distill_epochs == 1 and cfg.train_per_class == 100 and cfg.distill_batch_size == 256
    assert GradSplitterConfig.from_options({"preset": "paper", "max_cycles": "2"}, "gradsplitter").max_cycles == 2


def test_the_default_is_the_best_measured_setting_and_paper_keeps_the_parents_weights():
    default = GradSplitterConfig.from_options({}, "gradsplitter")
    fast = GradSplitterConfig.from_options({"preset": "fast"}, "gradsplitter")
    assert default == fast
    paper = GradSplitterConfig.from_options({"preset": "paper"}, "gradsplitter")
    assert paper.distill_epochs == 0 and paper.train_per_class == 400


def test_an_unknown_preset_names_the_known_ones():
    with pytest.raises(HubmodError, match="unknown preset 'turbo' for method gradsplitter; its presets are: "
                                          "fast, small, paper, thorough"):
        GradSplitterConfig.from_options({"preset": "turbo"}, "gradsplitter")
