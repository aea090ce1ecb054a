"""Combiners fitted on a few labelled images (hubmod.combiners): each fixes what raw scores cannot."""

import pytest
import torch

from hubmod.combiners import AffineCombiner, Combiner, ProbeCombiner, StackCombiner, build
from hubmod.errors import InvalidRepoError


def _over_claiming(n: int, seed: int):
    """Two modules whose raw argmax always says class 1: module 1 over-claims images of class 0.

    Class 0 images score (0.6, 0.8), class 1 images (0.2, 0.9), with a little noise.
    """
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(2).repeat_interleave(n)
    centres = torch.tensor([[0.6, 0.8], [0.2, 0.9]])
    scores = centres[y] + 0.02 * torch.randn(2 * n, 2, generator=g)
    features = torch.cat([scores, torch.randn(2 * n, 6, generator=g)], dim=1)  # two informative, six noise
    return scores, features, y


@pytest.mark.parametrize("kind", ["affine", "stack", "probe"])
def test_a_fitted_combiner_separates_what_raw_scores_do_not(kind):
    scores, features, y = _over_claiming(10, seed=0)
    test_scores, test_features, test_y = _over_claiming(200, seed=1)
    assert float((test_scores.argmax(1) == test_y).float().mean()) == 0.5  # raw argmax: always class 1
    comb = build(kind, 2, features.shape[1]).fit(scores, features, y, torch.Generator().manual_seed(0))
    with torch.no_grad():
        acc = float((comb(test_scores, test_features).argmax(1) == test_y).float().mean())
    assert acc >= 0.95, (kind, acc)  # the classes are 0.4 apart on module 0's score, the noise 0.02


@pytest.mark.parametrize("kind", ["affine", "stack", "probe"])
def test_seeded_fits_are_identical_and_one_shot_works(kind):
    scores, features, y = _over_claiming(5, seed=3)
    a = build(kind, 2, 8).fit(scores, features, y, torch.Generator().manual_seed(7))
    b = build(kind, 2, 8).fit(scores, features, y, torch.Generator().manual_seed(7))
    assert all(torch.equal(a.state_dict()[k], b.state_dict()[k]) for k in a.state_dict())
    one = build(kind, 2, 8).fit(scores[[0, 5]], features[[0, 5]], y[[0, 5]], torch.Generator().manual_seed(0))
    assert torch.isfinite(one(scores, features)).all()  # K = 1: no cross-validation, the default penalty


def test_the_registry_and_specs_round_trip():
    assert set(Combiner.registry) == {"affine", "stack", "probe"}
    for cls, features in ((AffineCombiner, 0), (StackCombiner, 0), (ProbeCombiner, 12)):
        comb = cls(3, features)
        again = Combiner.from_spec(comb.spec(), "here")
        assert type(again) is cls and again.spec() == comb.spec()
        assert again.state_dict().keys() == comb.state_dict().keys()
    with pytest.raises(InvalidRepoError, match="names no combiner"):
        Combiner.from_spec({"kind": "magic", "classes": 3}, "here")
    with pytest.raises(InvalidRepoError, match="impossible shape"):
        Combiner.from_spec({"kind": "stack", "classes": True}, "here")
    with pytest.raises(InvalidRepoError, match="re-fit"):
        ProbeCombiner(3, 12).check_fits(3, 40, "here")


GOOD_FIT = {"dataset": "fashion-mnist", "split": "train", "source": "the train split", "shots": 10, "seed": 0,
            "combiner": "stack", "calibration": "minmax", "penalty": 0.01, "rows": [3, 1, 2]}


@pytest.mark.parametrize("record", [None, [], {"dataset": "d"}, {**GOOD_FIT, "shots": "10"},
                                    {**GOOD_FIT, "rows": [1, -2]}, {**GOOD_FIT, "seed": 1.5},
                                    {**GOOD_FIT, "penalty": float("nan")}])
def test_a_fit_record_from_a_repo_is_checked_field_by_field(record):
    from hubmod.fitting import checked_fit_record

    assert checked_fit_record(GOOD_FIT, "me/x") == GOOD_FIT
    with pytest.raises(InvalidRepoError, match="me/x config.json fit"):
        checked_fit_record(record, "me/x")


def test_a_few_images_move_the_probe_from_the_plain_composition_not_from_nothing():
    """With two images per class and many uninformative features, a probe pulled toward zero weights
    separates the images along noise (about half right); pulled toward each class reading its own
    module's score, it keeps most of what the scores already get right."""
    def task(n: int, seed: int):
        g = torch.Generator().manual_seed(seed)
        y = torch.arange(3).repeat_interleave(n)
        scores = torch.nn.functional.one_hot(y, 3).float() * 0.3 + 0.1 * torch.rand(3 * n, 3, generator=g)
        return scores, torch.randn(3 * n, 64, generator=g), y

    scores, features, y = task(2, seed=0)
    test_scores, test_features, test_y = task(300, seed=1)
    assert float((test_scores.argmax(1) == test_y).float().mean()) == 1.0  # the scores alone are right
    probe = build("probe", 3, 64).fit(scores, features, y, torch.Generator().manual_seed(0))
    with torch.no_grad():
        acc = float((probe(test_scores, test_features).argmax(1) == test_y).float().mean())
    assert acc >= 0.85, acc
