"""Diffusion parts shared by the diffusion families: schedules, the denoiser net and samplers.

Kept apart as diffusers keeps ``schedulers/``, ``models/`` and ``pipelines/`` apart: a family
picks a schedule, a denoiser and a sampler, and a faster sampler is a swap, not a rewrite.
"""

from synthkit.nn.blocks import OneHotBlocks
from synthkit.nn.diffusion.denoiser import DenoiserNet, timestep_embedding
from synthkit.nn.diffusion.samplers import (
    AncestralSampler,
    DDIMSampler,
    DiffusionSampler,
    DPMSolverSampler,
    KnownValues,
    strided_pairs,
)
from synthkit.nn.diffusion.schedule import (
    GaussianSchedule,
    MultinomialSchedule,
    NoiseSchedule,
    beta_schedule,
)

__all__ = [
    "AncestralSampler",
    "DDIMSampler",
    "DenoiserNet",
    "DPMSolverSampler",
    "DiffusionSampler",
    "GaussianSchedule",
    "KnownValues",
    "MultinomialSchedule",
    "NoiseSchedule",
    "OneHotBlocks",
    "beta_schedule",
    "strided_pairs",
    "timestep_embedding",
]
