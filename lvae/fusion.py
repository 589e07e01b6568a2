"""Batch norm folded into the layer before it, for evaluation: one op instead of two on every row.

Why: in eval mode a BatchNorm is a fixed affine map, so Linear -> BatchNorm1d (Conv2d or
ConvTranspose2d -> BatchNorm2d) is one Linear (Conv2d, ConvTranspose2d) with rescaled weights, torch's own
`torch.nn.utils.fusion.fuse_*_bn_eval`. An importance-weighted evaluation runs the top-down pass
K times per image, and the batch-norm passes were several per cent of it; the folded copy
gives the same log-weights to float32 rounding (tests/test_fusion.py).
"""

from __future__ import annotations

import copy
from functools import partial

from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval, fuse_linear_bn_eval

FOLDABLE = ((nn.Linear, nn.BatchNorm1d, fuse_linear_bn_eval), (nn.Conv2d, nn.BatchNorm2d, fuse_conv_bn_eval),
            (nn.ConvTranspose2d, nn.BatchNorm2d, partial(fuse_conv_bn_eval, transpose=True)))


def folded_for_inference(model: nn.Module) -> nn.Module:
    """An eval-mode copy of `model` in which every Linear, Conv2d or ConvTranspose2d directly followed by its BatchNorm inside an
    nn.Sequential is one layer; the model itself is untouched. Batch norms elsewhere stay as they are."""
    folded = copy.deepcopy(model).eval()
    for seq in [m for m in folded.modules() if isinstance(m, nn.Sequential)]:
        for i in range(len(seq) - 1):
            layer, norm = seq[i], seq[i + 1]
            for layer_type, norm_type, fuse in FOLDABLE:
                if type(layer) is layer_type and type(norm) is norm_type and norm.track_running_stats:
                    seq[i], seq[i + 1] = fuse(layer, norm), nn.Identity()
    return folded
