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
