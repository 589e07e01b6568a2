"""The digit classifier (the judge of samples), its histogram statistics, and the Fréchet distance."""

import math

import numpy as np
import pytest
import scipy.linalg
import torch

from lvae.classifier import (ASSET, FEATURES, DigitClassifier, class_histogram, classifier_info, features,
                             kl_to_uniform, load_classifier, train_classifier)
from lvae.checkpoint import CheckpointError
from lvae.data import default_root, fetch_command, is_cached, load_split, synthetic_split
from lvae.fid import frechet_distance


def test_kl_to_uniform_at_its_extremes():
    assert kl_to_uniform(class_histogram(torch.arange(10).repeat(7))) == pytest.approx(0.0, abs=1e-12)
    assert kl_to_uniform(class_histogram(torch.full((50,), 3))) == pytest.approx(math.log(10))
    hist = class_histogram(torch.tensor([0, 0, 1, 2]))
    assert hist.sum().item() == pytest.approx(1.0) and hist[0].item() == pytest.approx(0.5)
    p = hist[hist > 0]
    assert kl_to_uniform(hist) == pytest.approx(float((p * torch.log(p / 0.1)).sum()))


def test_frechet_distance_matches_the_closed_form():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(4000, 6))
    b = rng.normal(size=(4000, 6)) @ rng.normal(size=(6, 6)) + 2.0
    ca, cb = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    ref = ((a.mean(0) - b.mean(0)) ** 2).sum() + np.trace(ca + cb - 2 * scipy.linalg.sqrtm(ca @ cb).real)
    assert frechet_distance(a, b) == pytest.approx(ref, rel=1e-8)
    assert frechet_distance(a, a) == pytest.approx(0.0, abs=1e-8)
    assert frechet_distance(a, b) == pytest.approx(frechet_distance(b, a), rel=1e-8)


def test_frechet_distance_survives_dead_features():
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=(500, 5)), rng.normal(size=(500, 5)) + 1.0
    a[:, 0] = b[:, 0] = 0.0  # a ReLU unit dead in both sets: singular covariances
    assert frechet_distance(a, b) == pytest.approx(frechet_distance(a[:, 1:], b[:, 1:]), rel=1e-6)


@pytest.mark.slow
def test_training_learns_synthetic_digits():
    train, test = synthetic_split(512, 0), synthetic_split(200, 1)
    model, info = train_classifier(train, test, epochs=3, batch_size=64, progress=False)
    assert info["test_accuracy"] > 0.5  # ten classes: chance is 0.1
    assert features(model, test.images).shape == (200, FEATURES)


# ----------------------------------------------------------------------------- the shipped judge on real MNIST


@pytest.fixture(scope="module")
def judged_test_set():
    """The real MNIST test set (10,000 digits) and the shipped classifier's features of it: (split, (N, 128))."""
    root = default_root()
    if not is_cached("mnist", root):
        pytest.skip(f"the MNIST cache is not in {root} (set LVAE_DATA, or fetch it: {fetch_command('mnist', root)})")
    split = load_split("mnist", "test", root)
    return split, features(load_classifier(), split.images)


@pytest.mark.slow
def test_the_shipped_classifier_scores_above_99_percent_on_the_real_test_set(judged_test_set):
    split, feats = judged_test_set
    model = load_classifier()
    assert isinstance(model, DigitClassifier) and not model.training and ASSET.stat().st_size < 10 * 2**20
    measured = (model.head(feats).argmax(1) == split.labels).float().mean().item()
    assert measured > 0.99, f"the shipped classifier scores {measured:.4f} on the MNIST test set"
    assert classifier_info()["test_accuracy"] == pytest.approx(measured, abs=1e-4)  # the number the asset states is true


@pytest.mark.slow
def test_fid_mnist_is_zero_for_a_set_against_itself_and_large_for_what_is_not_mnist(judged_test_set):
    """On the judge's features of real digits: ~0 against itself, small between two random halves
    (sampling noise only), and hundreds for uniform noise or for one digit class alone (mode collapse)."""
    split, feats = judged_test_set
    order = torch.randperm(len(feats), generator=torch.Generator().manual_seed(0))
    a, b = feats[order[:5000]], feats[order[5000:]]
    assert abs(frechet_distance(feats, feats)) < 1e-3
    assert frechet_distance(feats[order], a) == pytest.approx(frechet_distance(feats, a), abs=1e-4)  # order does not matter
    halves = frechet_distance(a, b)
    assert halves < 5  # measured 1.7
    torch.manual_seed(0)
    noise = frechet_distance(features(load_classifier(), torch.rand(1000, 1, 28, 28)), feats)
    ones = frechet_distance(feats[split.labels == 1], feats)
    assert noise > 100 * halves and ones > 100 * halves  # measured 810 and 757


def test_a_missing_classifier_says_how_to_make_it(tmp_path):
    with pytest.raises(CheckpointError, match="python -m lvae classifier"):
        load_classifier(tmp_path / "none.pt")
