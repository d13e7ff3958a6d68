"""image/diffusers: sample from, and fine-tune, a local ``diffusers`` checkpoint (no Hub access).

* **Checkpoint** — a local directory as ``DDPMPipeline.save_pretrained`` writes it: ``unet/``
  (a ``UNet2DModel``, safetensors weights) and ``scheduler/`` (any diffusers scheduler config).
  It is loaded with ``local_files_only=True`` and the Hub switched off; pickled ``.bin`` weights
  are refused, and the scheduler class must be one of diffusers' own.
* **Sampling** — the reverse chain of the checkpoint's scheduler (``sampler="checkpoint"``) or of
  DDPM, DDIM or DPM-Solver++ built from the same config, ``sampling_steps`` steps, batched, seeded
  by ``sample(..., seed=)``. A UNet with class embeddings (``num_class_embeds``) samples by class:
  ``conditions={"label": k}``. :meth:`DiffusersImageGenerator.from_checkpoint` samples the
  checkpoint as it is, without fine-tuning.
* **Fine-tuning** — ``fit(images)`` trains the whole UNet in the shared Trainer (noise, velocity
  or sample prediction, as the scheduler's ``prediction_type`` says; AdamW; checkpoints and
  ``fit(..., resume=True)``). Images must have the UNet's size and channels.
* **Artifacts** — a synthkit model directory: the UNet weights in ``weights.safetensors`` and the
  UNet and scheduler configs as JSON, so ``sk.load`` needs neither the base checkpoint nor the
  Hub; :meth:`DiffusersImageGenerator.export_pipeline` writes a ``DDPMPipeline`` directory back.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, ClassVar, Literal, TypeVar

import numpy as np
import torch
from pydantic import Field, field_validator

from synthkit.errors import ConfigError, DataError, MissingDependencyError
from synthkit.generators.image.base import ImageConfig, ImageGenerator, labels_tensor, split_batch
from synthkit.generators.neural import family_state
from synthkit.generators.offline import hub_offline
from synthkit.nn import StepContext, TrainingTask, load_module_state, module_state, resolve_device

G = TypeVar("G", bound="DiffusersImageGenerator")

_STATE_FILE = "image_diffusers.json"
_STATE_VERSION = 1
#: Samplers built from the checkpoint scheduler's config (diffusers class names).
_SAMPLERS = {"ddpm": "DDPMScheduler", "ddim": "DDIMScheduler", "dpm": "DPMSolverMultistepScheduler"}


class DiffusersImageConfig(ImageConfig):
    """Options of image/diffusers: the checkpoint, the sampler and fine-tuning."""

    checkpoint: str = Field(description="Local directory of a diffusers DDPMPipeline (unet/ and scheduler/).")
    epochs: int = Field(1, ge=1, description="Fine-tuning passes over the images.")
    batch_size: int = Field(16, ge=1, description="Images per optimisation step.")
    learning_rate: float = Field(1e-4, gt=0.0, description="AdamW learning rate of the fine-tuning.")
    sampler: Literal["checkpoint", "ddpm", "ddim", "dpm"] = Field(
        "checkpoint", description="Reverse chain: the checkpoint's own scheduler, or DDPM, DDIM or "
        "DPM-Solver++ built from its config."
    )
    sampling_steps: int = Field(50, ge=1, description="Scheduler steps per sample.")

    @field_validator("checkpoint", mode="before")
    @classmethod
    def _checkpoint_to_str(cls, value: Any) -> Any:
        return str(value) if isinstance(value, Path) else value


# --- the checkpoint ----------------------------------------------------------------------------
def _diffusers() -> Any:
    """The diffusers module, or an error naming the extra to install."""
    try:
        with hub_offline():
            import diffusers
    except ImportError as exc:
        raise MissingDependencyError(
            "image/diffusers needs the 'diffusers' package.", hint="pip install 'synthkit[diffusers]'"
        ) from exc
    return diffusers


def local_pipeline(checkpoint: str) -> Path:
    """The checked local directory of a diffusers pipeline (never a Hub id)."""
    path = Path(checkpoint).expanduser()
    if not path.is_dir():
        hub = not path.exists() and not path.is_absolute() and checkpoint.count("/") == 1
        raise ConfigError(
            f"checkpoint={checkpoint!r} is not a local directory"
            + ("; it looks like a Hugging Face Hub id, and image/diffusers never downloads." if hub else "."),
            hint="Save a pipeline with DDPMPipeline(unet=..., scheduler=...).save_pretrained(DIR) "
            "(or download it once with huggingface-cli download ID --local-dir DIR) and pass DIR.",
        )
    for part, name in (("unet", "config.json"), ("scheduler", "scheduler_config.json")):
        if not (path / part / name).is_file():
            raise ConfigError(
                f"{path} is not a diffusers pipeline directory: {part}/{name} is missing.",
                hint="Pass the folder DDPMPipeline.save_pretrained wrote (with unet/ and scheduler/).",
            )
    if not any((path / "unet").glob("*.safetensors")):
        raise ConfigError(
            f"{path / 'unet'} has no safetensors weights (pickled .bin weights are not loaded).",
            hint="Re-save the pipeline with save_pretrained(dir, safe_serialization=True).",
        )
    return path


def _file_hashes(path: Path) -> dict[str, str]:
    out = {}
    for file in sorted(p for p in path.rglob("*") if p.is_file() and p.suffix in (".json", ".safetensors")):
        h = hashlib.sha256()
        with open(file, "rb") as fh:
            for block in iter(lambda fh=fh: fh.read(1 << 24), b""):
                h.update(block)
        out[file.relative_to(path).as_posix()] = "sha256:" + h.hexdigest()
    return out


def _scheduler_class(diffusers: Any, name: str) -> Any:
    """A diffusers scheduler class by name: only diffusers' own schedulers."""
    cls = getattr(diffusers, name, None) if name.endswith("Scheduler") else None
    if cls is None or not isinstance(cls, type) or not hasattr(cls, "from_config"):
        raise ConfigError(f"Unknown diffusers scheduler class {name!r}.",
                          hint="Use a scheduler that ships with diffusers (e.g. DDPMScheduler).")
    return cls


# --- training ----------------------------------------------------------------------------------
class DiffusersTrainingTask(TrainingTask):
    """Diffusion loss of a diffusers UNet under its scheduler's noising; AdamW."""

    def __init__(self, unet: torch.nn.Module, scheduler: Any, shape: tuple[int, int, int], *,
                 learning_rate: float, conditional: bool) -> None:
        self.unet, self.scheduler, self.shape, self.conditional = unet, scheduler, shape, conditional
        self.optimizer = torch.optim.AdamW(unet.parameters(), lr=learning_rate)
        self.prediction = scheduler.config.get("prediction_type", "epsilon")
        if self.prediction not in ("epsilon", "v_prediction", "sample"):
            raise ConfigError(f"Unsupported prediction_type {self.prediction!r} in the scheduler config.")

    def modules(self) -> dict[str, torch.nn.Module]:
        return {"unet": self.unet}

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"adamw": self.optimizer}

    dp_row_losses = True  # train_step hands ctx.optimize each image's loss

    def private_modules(self) -> tuple[list[str], list[str]]:
        """The UNet is fine-tuned on real images: DP-SGD privatises it (the base checkpoint is
        public)."""
        return ["unet"], ["adamw"]

    def train_step(self, batch: torch.Tensor, ctx: StepContext) -> dict[str, torch.Tensor]:
        x0, y = split_batch(batch, self.shape)
        rows = x0.shape[0]
        steps = int(self.scheduler.config.num_train_timesteps)
        t = torch.randint(0, steps, (rows,), generator=ctx.generator, device=ctx.device)
        noise = torch.randn(x0.shape, generator=ctx.generator, device=ctx.device)
        x_t = self.scheduler.add_noise(x0, noise, t)
        if self.prediction == "epsilon":
            target = noise
        elif self.prediction == "v_prediction":
            target = self.scheduler.get_velocity(x0, noise, t)
        else:
            target = x0
        with ctx.autocast():
            pred = self.unet(x_t, t, class_labels=y if self.conditional else None).sample
        row_losses = (pred.float() - target).square().flatten(1).mean(1)
        loss = row_losses.mean()
        ctx.optimize(loss, self.optimizer, rows=row_losses)
        return {"loss": loss.detach()}


# --- the generator -----------------------------------------------------------------------------
class DiffusersImageGenerator(ImageGenerator):
    """A local diffusers UNet2DModel + scheduler: sample it, fine-tune it on an ImageSet."""

    name = "image/diffusers"
    config_class = DiffusersImageConfig
    config: DiffusersImageConfig
    sample_chunk: ClassVar[int] = 64

    @property
    def levels(self) -> int:  # type: ignore[override]
        if hasattr(self, "unet_config_"):
            config = self.unet_config_
        else:
            path = local_pipeline(self.config.checkpoint)
            config = json.loads((path / "unet" / "config.json").read_text(encoding="utf-8"))
        return max(len(config.get("block_out_channels", [0])) - 1, 0)

    def _load_checkpoint(self) -> tuple[torch.nn.Module, Any, Path]:
        diffusers = _diffusers()
        path = local_pipeline(self.config.checkpoint)
        scheduler_config = json.loads((path / "scheduler" / "scheduler_config.json").read_text(encoding="utf-8"))
        scheduler_cls = _scheduler_class(diffusers, str(scheduler_config.get("_class_name", "DDPMScheduler")))
        with hub_offline():
            unet = diffusers.UNet2DModel.from_pretrained(
                str(path), subfolder="unet", local_files_only=True, use_safetensors=True)
            scheduler = scheduler_cls.from_pretrained(str(path), subfolder="scheduler", local_files_only=True)
        return unet.float(), scheduler, path

    def _adopt(self, unet: torch.nn.Module, scheduler: Any, path: Path) -> None:
        """Keep the loaded UNet, scheduler and where they came from."""
        self.unet_config_ = dict(unet.config)
        self.scheduler_class_ = type(scheduler).__name__
        self.scheduler_config_ = dict(scheduler.config)
        self.base_ = {"checkpoint": str(path), "files": _file_hashes(path)}

    @classmethod
    def from_checkpoint(cls: type[G], checkpoint: str | Path, **config: Any) -> G:
        """The checkpoint as it is (no fine-tuning), ready to ``sample`` and ``save``."""
        gen = cls(checkpoint=checkpoint, **config)
        unet, scheduler, path = gen._load_checkpoint()
        gen._adopt(unet, scheduler, path)
        size = unet.config.sample_size
        h, w = (size, size) if isinstance(size, int) else tuple(size)
        gen.image_shape_ = (int(h), int(w), int(unet.config.in_channels))
        k = unet.config.num_class_embeds or 0
        gen.classes_ = list(range(k))
        gen.class_shares_ = [1.0 / k] * k if k else []
        gen.data_fingerprint_ = "sha256:" + hashlib.sha256(
            json.dumps(gen.base_["files"], sort_keys=True).encode()).hexdigest()
        gen.n_rows_ = 0
        gen.fit_report_ = {"warnings": [], "pretrained": gen.base_}
        gen.device_ = resolve_device(gen.config.device, fallback=True)
        gen.unet_ = unet.to(gen.device_).eval()
        return gen

    def _fit_images(self, matrix: np.ndarray, *, resume: bool) -> None:
        unet, scheduler, path = self._load_checkpoint()
        h, w, c = self.image_shape_
        size = unet.config.sample_size
        want = (size, size) if isinstance(size, int) else tuple(size)
        if (h, w) != tuple(want) or c != unet.config.in_channels:
            raise DataError(
                f"The checkpoint's UNet takes {want[0]}×{want[1]} images with {unet.config.in_channels} "
                f"channel(s); these are {h}×{w} with {c}.",
                hint=f"Resize them (imageset.resized({want[0]})) or read them with "
                f"read_images(path, size={want[0]}, channels={unet.config.in_channels}).",
            )
        k = unet.config.num_class_embeds or 0
        if self.classes_ and not k:
            self.fit_report_["warnings"].append(
                "the checkpoint's UNet has no class embeddings: labels are ignored (unconditional model)")
            self.classes_, self.class_shares_ = [], []
        elif k and not self.classes_:
            raise DataError(
                f"The checkpoint's UNet is class-conditional ({k} classes): it needs labelled images.",
                hint="Fit on an ImageSet with labels (and conditional=True).")
        elif k and len(self.classes_) > k:
            raise DataError(f"The images have {len(self.classes_)} classes; the UNet embeds only {k}.")
        self._adopt(unet, scheduler, path)
        trainer = self._trainer("image/diffusers")
        task = DiffusersTrainingTask(unet.to(trainer.device).train(), scheduler, self.image_shape_,
                                     learning_rate=self.config.learning_rate, conditional=bool(self.classes_))
        self._run(trainer, task, matrix, resume=resume)
        self.unet_ = unet.eval()
        self.fit_report_["diffusers"] = {"base": self.base_,
                                         "parameters": sum(p.numel() for p in unet.parameters())}

    def scheduler(self) -> Any:
        """The sampling scheduler: the checkpoint's, or the configured one from its config."""
        diffusers = _diffusers()
        name = self.scheduler_class_ if self.config.sampler == "checkpoint" else _SAMPLERS[self.config.sampler]
        return _scheduler_class(diffusers, name).from_config(self.scheduler_config_)

    def _sample_images(self, n: int, y: np.ndarray | None, generator: torch.Generator) -> np.ndarray:
        h, w, c = self.image_shape_
        scheduler = self.scheduler()
        scheduler.set_timesteps(min(self.config.sampling_steps, int(scheduler.config.num_train_timesteps)),
                                device=self.device_)
        labels = labels_tensor(y, self.device_)
        x = torch.randn((n, c, h, w), generator=generator, device=self.device_) * scheduler.init_noise_sigma
        for t in scheduler.timesteps:
            model_input = scheduler.scale_model_input(x, t)
            out = self.unet_(model_input, t, class_labels=labels).sample
            x = scheduler.step(out, t, x, generator=generator).prev_sample
        return x.clamp(-1, 1).float().cpu().numpy()

    def export_pipeline(self, path: str | Path) -> Path:
        """Write the (fine-tuned) UNet and the checkpoint's scheduler as a diffusers DDPMPipeline
        directory (safetensors + JSON), loadable with ``DDPMPipeline.from_pretrained``."""
        self._check_fitted()
        diffusers = _diffusers()
        scheduler = _scheduler_class(diffusers, self.scheduler_class_).from_config(self.scheduler_config_)
        pipeline = diffusers.DDPMPipeline(unet=self.unet_, scheduler=scheduler)
        pipeline.save_pretrained(str(path), safe_serialization=True)
        return Path(path)

    def _state(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        state = {"version": _STATE_VERSION, "unet_config": self.unet_config_,
                 "scheduler_class": self.scheduler_class_, "scheduler_config": self.scheduler_config_,
                 "base": self.base_}
        return module_state({"unet": self.unet_}), {_STATE_FILE: json.loads(json.dumps(state, default=_json))}

    def _restore(self, tensors: dict[str, np.ndarray], files: dict[str, Any], *, trust_pickle: bool) -> None:
        state = family_state(files, _STATE_FILE, _STATE_VERSION)
        diffusers = _diffusers()
        self.unet_config_ = state["unet_config"]
        self.scheduler_class_ = state["scheduler_class"]
        _scheduler_class(diffusers, self.scheduler_class_)
        self.scheduler_config_ = state["scheduler_config"]
        self.base_ = state.get("base", {})
        self.device_ = resolve_device(self.config.device, fallback=True)
        unet = diffusers.UNet2DModel.from_config(self.unet_config_)
        load_module_state({"unet": unet}, tensors)
        self.unet_ = unet.float().to(self.device_).eval()


def _json(value: Any) -> Any:
    """Config values diffusers keeps as tuples, arrays or paths, as plain JSON."""
    if isinstance(value, (tuple, set)):
        return list(value)
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    return str(value)
