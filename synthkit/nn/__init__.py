"""Shared torch parts for the neural generator families: the Trainer, devices, state I/O."""

from synthkit.nn.device import resolve_device, seeded
from synthkit.nn.state import load_module_state, module_state
from synthkit.nn.trainer import StepContext, Trainer, TrainingTask, TrainResult

__all__ = [
    "StepContext",
    "TrainResult",
    "Trainer",
    "TrainingTask",
    "load_module_state",
    "module_state",
    "resolve_device",
    "seeded",
]
