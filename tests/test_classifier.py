"""The digit classifier (the judge of samples), its histogram statistics, and the Fréchet distance."""

import math

import numpy as np
import pytest
import scipy.linalg
import torch

from lvae.classifier import (ASSET, FEATURES, DigitClassifier, class_histogram, classifier_info, features,
                             kl_to_uniform, load_classifier, train_classifier)
from lvae.checkpoint import CheckpointError
from lvae.data import synthetic_split
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


def test_training_learns_synthetic_digits():
    train, test = synthetic_split(512, 0), synthetic_split(200, 1)
    model, info = train_classifier(train, test, epochs=3, batch_size=64, progress=False)
    assert info["test_accuracy"] > 0.5  # ten classes: chance is 0.1
    assert features(model, test.images).shape == (200, FEATURES)


def test_the_shipped_classifier_loads_and_reached_99_percent():
    model = load_classifier()
    assert isinstance(model, DigitClassifier) and not model.training
    assert classifier_info()["test_accuracy"] >= 0.99  # measured on the full MNIST test set when it was trained
    assert ASSET.stat().st_size < 10 * 2**20


def test_a_missing_classifier_says_how_to_make_it(tmp_path):
    with pytest.raises(CheckpointError, match="python -m lvae classifier"):
        load_classifier(tmp_path / "none.pt")
