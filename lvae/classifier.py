"""A small MNIST digit classifier: the judge of generated samples.

It labels prior samples (class histogram, KL to uniform) and its penultimate layer is
the feature space of the Fréchet distance (`lvae.fid`). Trained once by
`python -m lvae classifier` in a few CPU minutes; the weights ship in
`lvae/assets/mnist_classifier.pt` (under 1 MB) so every evaluation uses the same judge.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lvae import checkpoint as ckpt
from lvae.data import Split
from lvae.progress import progress_bar

ASSET = Path(__file__).parent / "assets" / "mnist_classifier.pt"
FEATURES = 128


class DigitClassifier(nn.Module):
    """Two conv stages (5x5, 3x3; 28 -> 14 -> 7), a 128-unit feature layer, a linear head."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 32, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),  # (B, 32, 14, 14)
            nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),  # (B, 64, 7, 7)
            nn.Flatten(), nn.Dropout(0.25),
            nn.Linear(64 * 7 * 7, FEATURES), nn.ReLU(),  # (B, 128): the FID feature space
        )
        self.head = nn.Sequential(nn.Dropout(0.25), nn.Linear(FEATURES, 10))

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.features(x))


# ----------------------------------------------------------------------------- training


def _augment(x: Tensor, generator: torch.Generator) -> Tensor:
    """Random shifts of up to 2 pixels: cheap, and it makes the judge robust to off-centre samples."""
    pad = F.pad(x, (2, 2, 2, 2))
    dy, dx = torch.randint(0, 5, (2,), generator=generator).tolist()
    return pad[:, :, dy : dy + 28, dx : dx + 28]


@torch.no_grad()
def accuracy(model: DigitClassifier, split: Split, batch_size: int = 1000) -> float:
    return (predict(model, split.images, batch_size) == split.labels).float().mean().item()


def train_classifier(train: Split, test: Split, epochs: int = 4, batch_size: int = 128, lr: float = 2e-3,
                     seed: int = 0, progress: bool = True) -> tuple[DigitClassifier, dict[str, Any]]:
    """Adam with a one-cycle schedule; returns the model (eval mode) and its test accuracy."""
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    model = DigitClassifier()
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    steps = epochs * (len(train) // batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps)
    t0 = time.perf_counter()
    model.train()
    for epoch in range(epochs):
        order = torch.randperm(len(train), generator=gen)
        bar = progress_bar(range(len(train) // batch_size), enabled=progress, desc=f"classifier epoch {epoch + 1}/{epochs}")
        for b in bar:
            idx = order[b * batch_size : (b + 1) * batch_size]
            loss = F.cross_entropy(model(_augment(train.images[idx], gen)), train.labels[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
    model.eval()
    info = {"test_accuracy": accuracy(model, test), "epochs": epochs, "seconds": time.perf_counter() - t0}
    return model, info


def save_classifier(model: DigitClassifier, info: dict[str, Any], path: Path = ASSET) -> None:
    ckpt.save_atomic({"model": model.state_dict(), "info": info}, path)


def load_classifier(path: Path = ASSET) -> DigitClassifier:
    """The shipped judge, in eval mode; a missing file says how to make it."""
    if not Path(path).is_file():
        raise ckpt.CheckpointError(f"{path}: no digit classifier; train it with: python -m lvae classifier")
    sd = ckpt.load(path)
    model = DigitClassifier()
    model.load_state_dict(sd["model"])
    return model.eval()


def classifier_info(path: Path = ASSET) -> dict[str, Any]:
    return dict(ckpt.load(path)["info"])


# ----------------------------------------------------------------------------- use


@torch.no_grad()
def features(model: DigitClassifier, images: Tensor, batch_size: int = 1000) -> Tensor:
    """Penultimate (128-d) features of images in [0, 1]: (N, 1, 28, 28) -> (N, 128)."""
    return torch.cat([model.features(images[i : i + batch_size]) for i in range(0, len(images), batch_size)])


@torch.no_grad()
def predict(model: DigitClassifier, images: Tensor, batch_size: int = 1000) -> Tensor:
    """Predicted digit per image: (N,) int64."""
    return torch.cat([model(images[i : i + batch_size]).argmax(1) for i in range(0, len(images), batch_size)])


def class_histogram(labels: Tensor, classes: int = 10) -> Tensor:
    """Fraction of samples per class: (classes,), sums to 1."""
    return torch.bincount(labels, minlength=classes).double() / len(labels)


def kl_to_uniform(hist: Tensor) -> float:
    """KL(hist || uniform) in nats: 0 for a perfectly balanced histogram, log(10) for one class only."""
    p = hist[hist > 0]
    return float((p * torch.log(p * len(hist))).sum())
