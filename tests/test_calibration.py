import torch

from hubmod import calibration


def test_platt_orders_and_separates():
    g = torch.Generator().manual_seed(0)
    own = torch.randn(200, generator=g) + 3
    other = torch.randn(1800, generator=g)
    cal = calibration.fit(own, other)
    p = calibration.apply("platt", torch.tensor([-2.0, 1.5, 5.0]), cal)
    assert p[0] < 0.05 and 0.3 < p[1] < 0.7 and p[2] > 0.95
    mm = calibration.apply("minmax", own, cal)
    assert abs(float(mm.min())) < 1e-9 and abs(float(mm.max()) - 1) < 1e-9
    assert cal["own"]["n"] == 200 and cal["other"]["n"] == 1800


def test_scale_free_platt_makes_modules_comparable():
    g = torch.Generator().manual_seed(1)
    own, other = torch.randn(100, generator=g) + 2, torch.randn(900, generator=g)
    a = calibration.fit(own, other)
    b = calibration.fit(own * 10 + 7, other * 10 + 7)  # same separability, another scale
    x = torch.tensor([0.0, 1.0, 2.0])
    assert torch.allclose(calibration.apply("platt", x, a), calibration.apply("platt", x * 10 + 7, b), atol=1e-3)


def test_a_module_that_scores_every_image_alike_is_told_from_its_statistics():
    same = calibration.fit(torch.full((20,), -1.8996561765670776), torch.full((80,), -1.8996561765670776))
    assert calibration.constant(same)
    assert calibration.constant(calibration.fit(torch.full((5,), 3e4), torch.full((9,), 3e4)))
    g = torch.Generator().manual_seed(0)
    varied = calibration.fit(torch.randn(20, generator=g) + 2, torch.randn(80, generator=g))
    assert not calibration.constant(varied)
    # own class scored alike but apart from the others: a module that still tells its class apart
    assert not calibration.constant(calibration.fit(torch.full((20,), 1.0), torch.full((80,), -1.0)))
    assert not calibration.constant({}) and not calibration.constant({"own": {"min": "x", "max": 1}, "other": {}})


def test_composing_a_constant_module_with_another_splits_warns_and_says_what_to_do(vgg_split, caplog):
    import copy
    import logging

    from hubmod.composed import compose_modules

    kept, odd = vgg_split.modules[0], copy.deepcopy(vgg_split.modules[1])
    assert not any(calibration.constant(m.config.calibration) for m in vgg_split.modules)
    odd.config.calibration = calibration.fit(torch.full((20,), -1.9), torch.full((80,), -1.9))
    with caplog.at_level(logging.WARNING, logger="hubmod.composed"):
        compose_modules([(kept, {}), (odd, {"repo_id": "bob/odd"})])  # one split: it ranks right there
        assert not caplog.records
        odd.config.split_id = "another split"
        compose_modules([(kept, {}), (odd, {"repo_id": "bob/odd"})])
        assert len(caplog.records) == 1
        message = caplog.records[0].getMessage()
        assert f"the {odd.class_name} module of bob/odd gives every image the same score" in message
        assert "fit=" in message and "adapt=" in message
        caplog.clear()
        compose_modules([(kept, {}), (odd, {"repo_id": "bob/odd"})], adapt=None, fit=None,
                        calibration_method="minmax")
        assert len(caplog.records) == 1  # whatever the rule: no zero-shot rule gives it its share


def test_a_final_module_that_cannot_see_the_image_becomes_the_whole_parent(tiny_parent_dirs, monkeypatch, caplog,
                                                                           tmp_path):
    """Whatever the method made, and after distillation, a blind module is not what the split ships."""
    import logging

    import hubmod
    from hubmod import split_pipeline
    from hubmod.channels import count_kernels
    from hubmod.data import load_images
    from hubmod.metrics import model_logits
    from hubmod.module import ClassModule
    from hubmod.parents import load_parent
    from tests.conftest import TINY_SPLIT

    real = split_pipeline.get_splitter

    def blinding(method, options):  # the method's own split, with class 1's module cut off from the image
        splitter = real(method, options)
        method_split = splitter.split

        def split(ctx):
            outcome = method_split(ctx)
            s = outcome.slices[1]
            s.kept, s.backbone, s.zeroed = {**s.kept, ctx.groups[2].name: []}, None, []  # a plain chain's layer
            s = outcome.slices[2]  # sees the image, but scores its class lowest: ROC AUC far below the parent's
            s.head_state = {k: -v if k.startswith("head.fc2.") else v for k, v in s.head_state.items()}
            return outcome

        splitter.split = split
        return splitter

    monkeypatch.setattr(split_pipeline, "get_splitter", blinding)
    with caplog.at_level(logging.WARNING, logger="hubmod.split_pipeline"):
        report = hubmod.split(str(tiny_parent_dirs["vgg"]), "fashion-mnist",
                              options={**TINY_SPLIT, "max_auc_loss": 0.3}, seed=0, publish=False, progress=False)
    warned = [r.getMessage() for r in caplog.records if "whole parent instead" in r.getMessage()]
    replaced = [m for m in report.modules if "whole_parent" in m.config.method]
    assert len(warned) == len(replaced) >= 2
    whole, pruned = report.modules[1], next(m for m in report.modules if m not in replaced)
    assert "same score" in whole.config.method["whole_parent"]
    assert "ROC AUC" in report.modules[2].config.method["whole_parent"] and report.modules[2] in replaced
    assert whole.config.head == {"type": "features_mlp", "in_features": 32, "hidden": 2}
    assert not calibration.constant(whole.config.calibration)
    parent = load_parent(str(tiny_parent_dirs["vgg"]))
    assert all(m.config.metrics["kernels"] == count_kernels(parent.model) for m in replaced)
    assert pruned.config.metrics["kernels"] < count_kernels(parent.model)

    images = load_images("fashion-mnist", "test").images[:64]
    scores, logits = whole.score(images), model_logits(parent.model, images, parent.data_config)
    # the parent's logit for the class, on the scale of the split's other modules' scores
    scale, offset = float(whole.head.fc2.weight[0, 0].detach()), float(whole.head.fc2.bias[0].detach())
    assert torch.allclose(scores, scale * logits[:, 1] + offset, atol=1e-4)
    others = torch.stack([m.score(images) for i, m in enumerate(report.modules) if i != 1], 1)
    mine = torch.cat([logits[:, :1], logits[:, 2:]], 1)
    assert float((others - (scale * mine + offset)).abs().mean()) < float((others - mine).abs().mean())
    whole.save_pretrained(tmp_path / "m")
    loaded = ClassModule.from_pretrained(tmp_path / "m")
    assert torch.allclose(loaded.score(images), scores, atol=1e-5)
    card = (tmp_path / "m" / "README.md").read_text()
    assert "kept the whole parent" in card and "the whole `hubmod_vgg`" in card and "a pruned" not in card
    # the split still composes: measured 2.8 points below the parent with its two whole parents (1.7 as the method
    # made it); with class 1 alone cut off and its raw parent logit, off the modules' scale, 21 points below
    assert report.composed_accuracy >= report.parent_accuracy - 0.08


def test_roc_auc_counts_ties_half():
    from hubmod.blind import roc_auc

    own = torch.tensor([True, True, False, False, False])
    assert roc_auc(torch.tensor([3.0, 2.0, 1.0, 0.0, -1.0]), own) == 1.0
    assert roc_auc(torch.tensor([-3.0, -2.0, 1.0, 0.0, -1.0]), own) == 0.0
    assert roc_auc(torch.full((5,), 7.0), own) == 0.5
    assert roc_auc(torch.tensor([1.0, 0.0, 1.0, 0.0, -1.0]), own) == (0.5 + 1 + 1 + 0 + 0.5 + 1) / 6
    assert roc_auc(torch.tensor([1.0, 2.0]), torch.tensor([True, True])) == 0.5  # nothing to tell apart


def test_the_parents_logit_is_put_on_the_modules_scale_by_least_squares():
    from hubmod.blind import logit_alignment, whole_parent_head

    g = torch.Generator().manual_seed(0)
    logits = torch.randn(200, generator=g)
    a, b = logit_alignment(logits, 0.8 * logits - 3.0)
    assert abs(a - 0.8) < 1e-6 and abs(b + 3.0) < 1e-6
    a, b = logit_alignment(logits, -logits)  # never reverses the order: the scale stays, the means meet
    assert a == 1.0 and abs(b + 2 * float(logits.double().mean())) < 1e-9
    assert logit_alignment(torch.zeros(1), torch.ones(1)) == (1.0, 0.0)

    parent = torch.nn.Sequential()
    parent.fc = torch.nn.Linear(6, 4)
    parent.get_classifier = lambda: parent.fc
    spec, state = whole_parent_head(parent, 2, 4, {"type": "features_mlp", "in_features": 3, "hidden": 10}, {},
                                    0.5, -1.0)
    from hubmod.heads import build_head

    head = build_head(spec, 6)
    head.load_state_dict({k.removeprefix("head."): v for k, v in state.items()})
    f = torch.randn(5, 6, generator=g)
    assert torch.allclose(head(f), 0.5 * parent.fc(f)[:, 2] - 1.0, atol=1e-6)
    kept = {"type": "margin", "in_features": 4, "index": 2}  # a head reading the logits is kept as it is
    assert whole_parent_head(parent, 2, 4, kept, {}, 0.5, -1.0) == (kept, {})
    parent.get_classifier = lambda: torch.nn.Identity()
    assert whole_parent_head(parent, 2, 4, {"type": "features_mlp", "in_features": 3, "hidden": 10}, {}, 0.5,
                             -1.0) == ({"type": "logit", "in_features": 4, "index": 2}, {})


def test_a_split_for_other_parents_replaces_weak_modules_unless_told_otherwise():
    from hubmod.split_pipeline import NEGATIVES_MAX_AUC_LOSS, for_other_parents
    from hubmod.splitters import get_splitter

    def resolved(options, negatives):
        config = get_splitter("gradsplitter", options).config
        for_other_parents(config, options, negatives)
        return config.max_auc_loss

    assert resolved(None, None) == 1.0 and resolved({"preset": "small"}, None) == 1.0
    assert resolved(None, "digits") == NEGATIVES_MAX_AUC_LOSS == resolved({"preset": "fast"}, "digits")
    assert resolved({"max_auc_loss": 1.0}, "digits") == 1.0 and resolved({"max_auc_loss": 0.2}, None) == 0.2


def test_a_module_published_before_reasons_were_recorded_still_says_why_it_is_the_whole_parent():
    from hubmod.module import _weights_desc

    assert "same score" in _weights_desc({"whole_parent": True})  # what whole_parent: true meant then
    assert "ROC AUC 0.5" in _weights_desc({"whole_parent": "told its class apart with ROC AUC 0.5"})
