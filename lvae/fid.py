"""Fréchet distance between two sets of features (Heusel et al., 2017), MNIST-flavoured.

    d^2 = |mu_a - mu_b|^2 + Tr(S_a) + Tr(S_b) - 2 Tr((S_a S_b)^{1/2})

Written with scipy rather than torchmetrics' FID: torchmetrics would be a new dependency
built around an Inception network we would have to switch off; here the features are the
digit classifier's 128-d penultimate layer (`lvae.classifier.features`), so the number is
an "FID_MNIST", comparable only with other numbers from the same shipped classifier.

The trace term uses Tr((S_a S_b)^{1/2}) = sum_i sqrt(lambda_i) with lambda_i the eigenvalues
of the symmetric PSD matrix S_a^{1/2} S_b S_a^{1/2} (`scipy.linalg.eigh`), not
`scipy.linalg.sqrtm(S_a S_b)`: ReLU features that are dead in both sets make S_a S_b
singular, where sqrtm warns and loses accuracy while the symmetric form stays exact.
"""

from __future__ import annotations

import numpy as np
import scipy.linalg
from torch import Tensor


def _psd_sqrt(s: np.ndarray) -> np.ndarray:
    w, v = scipy.linalg.eigh(s)
    return (v * np.sqrt(np.clip(w, 0, None))) @ v.T


def frechet_distance(a: Tensor | np.ndarray, b: Tensor | np.ndarray) -> float:
    """Fréchet distance between Gaussians fitted to feature sets a (N, D) and b (M, D), in float64."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    mu_a, mu_b = a.mean(0), b.mean(0)
    cov_a, cov_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    root_a = _psd_sqrt(cov_a)
    eig = scipy.linalg.eigvalsh(root_a @ cov_b @ root_a)
    trace_sqrt = np.sqrt(np.clip(eig, 0, None)).sum()
    return float(((mu_a - mu_b) ** 2).sum() + np.trace(cov_a) + np.trace(cov_b) - 2 * trace_sqrt)
