"""lvae: Ladder Variational Autoencoders (Sønderby et al., NeurIPS 2016) in PyTorch."""

from lvae.config import (
    BetaSchedule,
    ConfigError,
    LayerSpec,
    ModelConfig,
    ObjectiveConfig,
    RunConfig,
    TrainConfig,
)
from lvae.recipes import named_config, paper_config, seed_config
from lvae.latents import Gaussian, gaussian_kl, merge_gaussians
from lvae.model import HierarchicalModel, HierarchicalVAE, LadderVAE, ModelOutput, TopLatentVAE, build_model

__all__ = [
    "BetaSchedule",
    "ConfigError",
    "Gaussian",
    "LadderVAE",
    "LayerSpec",
    "ModelConfig",
    "ObjectiveConfig",
    "RunConfig",
    "TrainConfig",
    "TopLatentVAE",
    "HierarchicalVAE",
    "HierarchicalModel",
    "ModelOutput",
    "build_model",
    "gaussian_kl",
    "merge_gaussians",
    "named_config",
    "paper_config",
    "seed_config",
]
