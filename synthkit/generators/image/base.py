"""What the image families share: config, fit/sample on ImageSets, labels as conditions, save/load.

An image generator is a :class:`~synthkit.generators.base.Generator` whose data is an
:class:`~synthkit.images.ImageSet` rather than a table: ``fit(images)`` learns (class-conditional
when the set has labels and ``conditional=True``), ``sample(n, conditions={"label": k}, seed=)``
returns an ImageSet, ``save``/``load`` write safetensors + JSON like every family.

Training runs in the shared :class:`~synthkit.nn.Trainer`: each image is one row of the float32
matrix it takes (pixels in [-1, 1], channels first, flattened, then the class index), and a
family's :class:`~synthkit.nn.TrainingTask` reshapes its batch. So devices, mixed precision,
seeds, checkpoints and ``fit(..., resume=True)``, progress and loss history are the Trainer's.

Differential privacy (``dp={"epsilon": ...}``) trains the networks that see real images with
DP-SGD (Opacus, Poisson sampling, the whole budget) and covers the weights and every sample drawn
from them. The pixel range and the image size are public; the class set must be declared
(``classes=[...]``), and the class shares seen in the data are not kept (classes are sampled
uniformly). The manifest's data fingerprint and image count are not covered."""

from __future__ import annotations

import hashlib
import json
import time
from abc import abstractmethod
from collections.abc import Iterator, Mapping
from typing import Any, ClassVar, TypeVar

import numpy as np
import torch
from pydantic import Field, field_validator

from synthkit.errors import ConfigError, DataError, NotFittedError
from synthkit.generators.base import (
    GeneratorConfig,
    NonTabularGenerator,
    _check_n,
    declared_classes,
)
from synthkit.images import LABEL, ImageSet
from synthkit.nn import Trainer, TrainingTask, TrainResult
from synthkit.nn.privacy import DPConfig, sgd_budget, sgd_privacy_report

G = TypeVar("G", bound="ImageGenerator")

#: Settings that change how a run is carried out, not what it learns: a resumed run may change them.
RUN_ONLY_FIELDS = frozenset(
    {"epochs", "device", "progress", "checkpoint_dir", "checkpoint_every", "compile", "amp"}
)


class ImageConfig(GeneratorConfig):
    """Training options shared by the image families (same names as the tabular ones)."""

    epochs: int = Field(30, ge=1, description="Passes over the training images.")
    batch_size: int = Field(64, ge=1, description="Images per optimisation step.")
    learning_rate: float = Field(1e-3, gt=0.0, description="Adam(W) learning rate.")
    conditional: bool = Field(
        True,
        description="Learn one model per class (class-conditional) when the images have labels; "
        "sample(conditions={'label': k}) then asks for a class.",
    )
    device: str = Field("auto", description="'auto' (a GPU when there is one), 'cpu', 'cuda', ...")
    amp: bool = Field(True, description="bf16 mixed precision on a GPU (no effect on a CPU).")
    checkpoint_dir: str | None = Field(
        None, description="Directory for training checkpoints; needed for fit(..., resume=True)."
    )
    checkpoint_every: int = Field(10, ge=1, description="Epochs between checkpoints.")
    progress: bool = Field(True, description="Show a progress line per epoch.")
    compile: bool = Field(False, description="torch.compile the networks (PyTorch 2).")
    classes: list[str] | list[int] | None = Field(
        None, description="The public class set (required with dp when the images have labels); "
        "every label must be one of them."
    )
    dp: DPConfig | None = Field(
        None, description="Differential privacy of the fit, e.g. {'epsilon': 8}: DP-SGD (Opacus) "
        "on the networks that see real images."
    )

    @field_validator("classes")
    @classmethod
    def _distinct_classes(cls, value: Any) -> Any:
        if value is not None and (not value or len({str(v) for v in value}) != len(value)):
            raise ValueError("classes must be a non-empty list of distinct values")
        return value

    @field_validator("checkpoint_dir", mode="before")
    @classmethod
    def _path_to_str(cls, value: Any) -> Any:
        return None if value is None else str(value)


class ImageGenerator(NonTabularGenerator):
    """Base of the image families: they implement ``_fit_images``, ``_sample_images``,
    ``_state`` and ``_restore`` (plus ``levels``, how often their networks halve the image)."""

    config_class: ClassVar[type[GeneratorConfig]] = ImageConfig
    config: ImageConfig
    data_kind: ClassVar[str] = "images"
    #: Fewer training images than this raise DataError.
    min_rows: ClassVar[int] = 2
    supports_resume: ClassVar[bool] = True
    supports_conditions: ClassVar[bool] = True
    #: Images generated per network call when sampling (bounds memory for any n).
    sample_chunk: ClassVar[int] = 500
    #: How many times the networks halve the image: height and width must divide by 2**levels.
    levels: ClassVar[int] = 2

    @property
    def is_fitted(self) -> bool:
        return hasattr(self, "image_shape_")

    # --- fit -----------------------------------------------------------------------------------
    def fit(self: G, data: Any, *, schema: Any = None, resume: bool = False, labels: Any = None) -> G:
        """Learn from an ImageSet (or a uint8/float array ``N×H×W[×C]`` with ``labels=``)."""
        if schema is not None:
            raise ConfigError(f"{self.registry_name} learns images: it takes no table schema.")
        images = _as_imageset(data, labels)
        if len(images) < self.min_rows:
            raise DataError(
                f"{self.registry_name} needs at least {self.min_rows} images, got {len(images)}."
            )
        multiple = 2**self.levels
        if images.height % multiple or images.width % multiple:
            raise DataError(
                f"{self.registry_name} needs images whose height and width divide by {multiple}; "
                f"these are {images.height}×{images.width}.",
                hint=f"Resize them, e.g. read_images(path, size={_round_up(images.height, multiple)}) "
                "or imageset.resized(...).",
            )
        self.image_shape_ = images.shape
        self.data_fingerprint_ = images.fingerprint()
        self.n_rows_ = len(images)
        values = images.label_values()
        use_labels = self.config.conditional and values is not None
        private = self.config.dp is not None
        self.classes_ = declared_classes(
            values, self.config.classes, images.classes, private=private, what="class set", option="classes",
            hint="Pass classes=[...] (every label the images may have), or conditional=False.",
        ) if use_labels else []
        index = {str(v): i for i, v in enumerate(self.classes_)}
        y = np.asarray([index[str(v)] for v in values], np.int64) if use_labels else np.zeros(len(images), np.int64)
        counts = np.bincount(y, minlength=max(len(self.classes_), 1))
        # a private fit keeps no class shares (they are facts about the data DP-SGD does not cover)
        self.class_shares_ = (counts / counts.sum()).tolist() if self.classes_ and not private else []
        self.fit_report_: dict[str, Any] = {
            "warnings": [],
            "images": {"n": len(images), "shape": list(images.shape), "classes": len(self.classes_)},
        }
        if self.classes_ and counts.min() < 2 and not private:
            self.fit_report_["warnings"].append(
                f"class(es) {[self.classes_[i] for i in np.flatnonzero(counts < 2)]} have a single "
                "image: samples of them can only imitate it"
            )
        matrix = np.concatenate(
            [images.to_float().reshape(len(images), -1), y[:, None].astype(np.float32)], axis=1
        )
        started = time.perf_counter()
        try:
            self._fit_images(np.ascontiguousarray(matrix, np.float32), resume=resume)
        except BaseException:
            self._forget_fit()
            raise
        self.fit_report_["fit_seconds"] = round(time.perf_counter() - started, 4)
        return self

    @property
    def n_classes_(self) -> int:
        return len(self.classes_)

    @property
    def pixels_(self) -> int:
        h, w, c = self.image_shape_
        return h * w * c

    def _trainer(self, description: str) -> Trainer:
        cfg = self.config
        return Trainer(
            epochs=cfg.epochs,
            batch_size=cfg.batch_size,
            device=cfg.device,
            amp=cfg.amp,
            seed=cfg.seed,
            checkpoint_dir=cfg.checkpoint_dir,
            checkpoint_every=cfg.checkpoint_every,
            progress=cfg.progress,
            compile=cfg.compile,
            description=description,
            dp=sgd_budget(cfg.dp, self.n_rows_),
        )

    def _run(self, trainer: Trainer, task: TrainingTask, matrix: np.ndarray, *, resume: bool) -> TrainResult:
        """Train ``task`` and record the run in the fit report."""
        result = trainer.fit(task, matrix, resume=resume, fingerprint=self._run_fingerprint())
        self.device_ = trainer.device
        self.fit_report_["training"] = result.to_dict()
        self.fit_report_["warnings"].extend(result.warnings)
        if self.config.dp is not None and trainer.dp is not None:
            self.fit_report_["privacy"] = sgd_privacy_report(
                trainer.dp, self.config.dp, result.privacy,
                f"the weights of {self.registry_name}'s networks and every image sampled from them "
                "(image size, pixel range and the declared classes are public; classes are sampled "
                "uniformly); the manifest's data fingerprint and image count are not covered",
            )
        return result

    def _run_fingerprint(self) -> str:
        """What a checkpoint must match to be resumed: shaping config, data and classes."""
        h = hashlib.sha256()
        shaping = self.config.model_dump(mode="json", exclude=set(RUN_ONLY_FIELDS))
        h.update(json.dumps([self.registry_name, shaping, self.classes_], sort_keys=True, default=str).encode())
        h.update(self.data_fingerprint_.encode())
        return "sha256:" + h.hexdigest()

    # --- sample --------------------------------------------------------------------------------
    def sample(  # type: ignore[override]
        self,
        n: int,
        *,
        conditions: Mapping[str, Any] | None = None,
        seed: int | None = None,
        rebalance: Any = None,
    ) -> ImageSet:
        """``n`` new images (an ImageSet, labelled when the model is conditional).

        ``conditions={"label": k}`` asks for class ``k`` only; otherwise classes are drawn in
        their training shares. The same ``seed`` gives the same images.
        """
        if rebalance is not None:
            raise ConfigError("rebalance= applies to tables; image models take conditions={'label': k}.")
        batches = list(self.sample_batches(n, conditions=conditions, seed=seed))
        if not batches:
            h, w, c = self.image_shape_
            return ImageSet(np.zeros((0, h, w, c), np.uint8), None if not self.classes_ else _empty_labels(self.classes_))
        images = np.concatenate([b.images for b in batches])
        labels = None
        if self.classes_:
            labels = [v for b in batches for v in b.label_values() or []]
        return ImageSet.from_array(images, labels)

    def sample_batches(  # type: ignore[override]
        self,
        n: int,
        *,
        batch_size: int | None = None,
        conditions: Mapping[str, Any] | None = None,
        seed: int | None = None,
    ) -> Iterator[ImageSet]:
        """Yield ``n`` images as ImageSets of at most ``batch_size``: bounded memory for any n."""
        self._check_fitted()
        n = _check_n(n)
        size = self.sample_chunk if batch_size is None else int(batch_size)
        if size < 1:
            raise ConfigError(f"batch_size must be at least 1, got {size}.")
        fixed = self._check_image_conditions(conditions)
        rng = np.random.default_rng(seed)
        torch_seed = int(rng.integers(2**62))
        generator = torch.Generator(device=self.device_).manual_seed(torch_seed)
        done = 0
        while done < n:
            m = min(size, n - done)
            y = None
            if self.classes_:
                shares = np.asarray(self.class_shares_) if self.class_shares_ else None  # None: uniform
                y = np.full(m, fixed, np.int64) if fixed is not None else rng.choice(
                    self.n_classes_, size=m, p=shares)
            with torch.no_grad():
                x = self._sample_images(m, y, generator)
            labels = None if y is None else [self.classes_[i] for i in y]
            yield ImageSet.from_float(x, labels)
            done += m

    def _check_image_conditions(self, conditions: Mapping[str, Any] | None) -> int | None:
        if not conditions:
            return None
        unknown = set(conditions) - {LABEL}
        if unknown:
            raise ConfigError(
                f"Image models can be conditioned on '{LABEL}' only, not {sorted(unknown)}.",
                hint="Use conditions={'label': k} with a class seen in training.",
            )
        if not self.classes_:
            raise ConfigError(
                f"This {self.registry_name} model is not class-conditional: it was trained "
                "without labels (or with conditional=False).",
                hint="Fit on an ImageSet with labels (class sub-folders) to sample by class.",
            )
        value = conditions[LABEL]
        for i, known in enumerate(self.classes_):
            if value == known or str(value) == str(known):
                return i
        raise ConfigError(
            f"Class {value!r} was never seen in training.", hint=f"Known classes: {self.classes_}"
        )

    # --- persistence ---------------------------------------------------------------------------
    def _manifest_extra(self) -> dict[str, Any]:
        return {"image_shape": list(self.image_shape_), "classes": self.classes_,
                "class_shares": self.class_shares_}

    def _restore_manifest(self, manifest: Mapping[str, Any]) -> None:
        self.image_shape_ = tuple(int(d) for d in manifest["image_shape"])
        self.classes_ = list(manifest.get("classes", []))
        self.class_shares_ = list(manifest.get("class_shares", []))

    def _check_fitted(self) -> None:
        if not self.is_fitted:
            raise NotFittedError(f"This {type(self).__name__} is not fitted yet.", hint="Call fit(images) first.")

    # --- what families implement ---------------------------------------------------------------
    @abstractmethod
    def _fit_images(self, matrix: np.ndarray, *, resume: bool) -> None:
        """Train on ``matrix``: one row per image, pixels in [-1, 1] (C, H, W flattened), class last."""

    @abstractmethod
    def _sample_images(self, n: int, y: np.ndarray | None, generator: torch.Generator) -> np.ndarray:
        """float ``(n, C, H, W)`` in [-1, 1]; ``y`` the class index of each image (or None)."""


def split_batch(batch: torch.Tensor, shape: tuple[int, int, int]) -> tuple[torch.Tensor, torch.Tensor]:
    """A Trainer batch as images ``(B, C, H, W)`` and class indices ``(B,)``."""
    h, w, c = shape
    return batch[:, :-1].reshape(-1, c, h, w), batch[:, -1].round().long()


def labels_tensor(y: np.ndarray | None, device: torch.device) -> torch.Tensor | None:
    return None if y is None else torch.as_tensor(y, dtype=torch.long, device=device)


def _as_imageset(data: Any, labels: Any) -> ImageSet:
    if isinstance(data, ImageSet):
        if labels is not None:
            return ImageSet.from_array(data.images, labels)
        return data
    if isinstance(data, np.ndarray):
        return ImageSet.from_array(data, labels)
    raise DataError(
        f"Image generators fit on an ImageSet or an image array, got {type(data).__name__}.",
        hint="Read images with synthkit.connectors.images.read_images(path).",
    )


def _empty_labels(classes: list[Any]) -> Any:
    import polars as pl

    return pl.DataFrame({LABEL: classes[:0]})


def _round_up(value: int, multiple: int) -> int:
    return -(-value // multiple) * multiple
