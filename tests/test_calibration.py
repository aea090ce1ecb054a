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
