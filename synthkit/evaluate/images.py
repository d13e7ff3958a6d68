"""Quality and privacy of synthetic images: FID, KID, Inception Score, k-NN precision/recall,
memorisation; JSON and a self-contained HTML page.

Feature network (pluggable, ``features=``):

* default, :class:`DomainCNNFeatures`: a small CNN classifier trained on the real images' labels
  for a few epochs (a fixed random CNN when there are no labels); its penultimate layer gives the
  features and its softmax the class probabilities of the Inception Score. The report says
  ``features: domain CNN``: numbers are comparable between models evaluated against the same real
  set with the same seed, not with published FID/IS values (those use Inception-v3).
* :class:`TorchModuleFeatures`: any torch module with local weights (``weights_path``: a
  safetensors file or a ``torch.save``d state dict, loaded with ``weights_only=True``; nothing is
  downloaded). For Inception-v3 FID, build an Inception module yourself (synthkit does not ship
  the architecture and does not depend on torchvision), e.g.
  ``TorchModuleFeatures(inception, weights_path="pt_inception.pth", input_size=299,
  name="Inception-v3")``; a module that returns ``(features, logits)`` also gives the IS.
* A TorchScript file by path: ``evaluate_images(real, synthetic, features="inception.pt")`` (or
  :func:`feature_network`) loads it with ``torch.jit.load`` on the CPU, offline (a ``.pt2`` file
  of ``torch.export.save`` with ``torch.export.load``). Its input size,
  channels and name come from a ``synthkit.json`` extra file saved with it, if any (see
  :func:`save_feature_network`), else from the keyword arguments; the report then says
  ``FID (features: <name>)``. This is the way to use Inception-v3 without torchvision: script it
  once where torchvision is installed (e.g. pytorch-fid's ``InceptionV3``) and pass the file.

Memorisation works on pixels (scaled to [0, 1]): for each synthetic image, its distance to the
nearest training image ``d1`` over the median nearest-neighbour distance among training images
themselves (``privacy.image_nn_ratio_median``); an image with ratio under ``copy_threshold``
(default 0.25: four times closer to a training image than training images are to one another)
is flagged as a near-copy (``privacy.image_copy_share``); the closest pairs are listed, and
shown side by side in the HTML.
"""

from __future__ import annotations

import base64
import html
import io
import json
import os
import secrets
import warnings
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from synthkit.errors import ConfigError, DataError
from synthkit.evaluate.report import Metric, write_atomic
from synthkit.images import ImageSet, encode_png, image_grid, resize

IMAGE_REPORT_FORMAT_VERSION = 1


# --- feature networks --------------------------------------------------------------------------
@runtime_checkable
class ImageFeatures(Protocol):
    """What the metrics need: a description, features and (optionally) class probabilities."""

    name: str

    def fit(self, real: ImageSet) -> ImageFeatures:
        """Prepare on the real images (train, or nothing)."""

    def features(self, images: ImageSet) -> np.ndarray:
        """``(N, d)`` float features."""

    def probabilities(self, images: ImageSet) -> np.ndarray | None:
        """``(N, classes)`` class probabilities for the Inception Score, or None."""


def _to_tensor(images: ImageSet, size: tuple[int, int] | None, channels: int | None) -> Any:
    import torch

    pixels = images.images
    if size is not None and pixels.shape[1:3] != size:
        pixels = resize(pixels, size)
    x = torch.from_numpy(np.ascontiguousarray(pixels)).permute(0, 3, 1, 2).float() / 127.5 - 1.0
    if channels is not None and x.shape[1] != channels:
        x = x[:, :1].repeat(1, channels, 1, 1) if channels == 3 and x.shape[1] == 1 else x.mean(1, keepdim=True)
    return x


class DomainCNNFeatures:
    """A small CNN classifier trained on the real images (see the module docstring)."""

    def __init__(self, *, epochs: int = 8, seed: int = 0, size: int = 32, batch_size: int = 64) -> None:
        self.epochs, self.seed, self.size, self.batch_size = epochs, seed, size, batch_size
        self.name = "domain CNN"

    def fit(self, real: ImageSet) -> DomainCNNFeatures:
        import torch
        from torch import nn

        from synthkit.nn import seeded

        self.channels_ = real.channels
        self.shape_ = (min(real.height, self.size), min(real.width, self.size))
        values = real.label_values()
        self.classes_ = real.classes if values is not None and len(real.classes) >= 2 else []
        with seeded(self.seed):
            self.net_ = nn.Sequential(
                nn.Conv2d(self.channels_, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(2), nn.Flatten(),
                nn.Linear(128, 128), nn.ReLU(),
            )
            self.head_ = nn.Linear(128, max(len(self.classes_), 1))
        if self.classes_:
            index = {v: i for i, v in enumerate(self.classes_)}
            y = torch.as_tensor([index[v] for v in values], dtype=torch.long)
            x = _to_tensor(real, self.shape_, None)
            params = [*self.net_.parameters(), *self.head_.parameters()]
            opt = torch.optim.Adam(params, lr=3e-3)
            gen = torch.Generator().manual_seed(self.seed)
            for _ in range(self.epochs):
                order = torch.randperm(len(y), generator=gen)
                for start in range(0, len(y), self.batch_size):
                    idx = order[start : start + self.batch_size]
                    loss = nn.functional.cross_entropy(self.head_(self.net_(x[idx])), y[idx])
                    opt.zero_grad()
                    loss.backward()
                    opt.step()
            with torch.no_grad():
                self.train_accuracy_ = float((self.head_(self.net_(x)).argmax(1) == y).float().mean())
        else:
            self.name = "domain CNN (random weights: the real images have no labels to train on)"
        self.net_.eval()
        self.fitted_ = True
        return self

    def _forward(self, images: ImageSet) -> tuple[np.ndarray, np.ndarray]:
        import torch

        feats, logits = [], []
        with torch.no_grad():
            for start in range(0, len(images), 1024):
                x = _to_tensor(images.subset(slice(start, start + 1024)), self.shape_, self.channels_)
                h = self.net_(x)
                feats.append(h.numpy())
                logits.append(self.head_(h).numpy())
        return np.concatenate(feats).astype(np.float64), np.concatenate(logits).astype(np.float64)

    def features(self, images: ImageSet) -> np.ndarray:
        return self._forward(images)[0]

    def probabilities(self, images: ImageSet) -> np.ndarray | None:
        if not self.classes_:
            return None
        return _softmax(self._forward(images)[1])

    def predict(self, images: ImageSet) -> list[Any]:
        """The class the CNN gives each image (needs labelled real images at fit)."""
        probs = self.probabilities(images)
        if probs is None:
            raise ConfigError("The domain CNN was fitted without labels: it cannot classify.")
        return [self.classes_[i] for i in probs.argmax(1)]


class TorchModuleFeatures:
    """Any torch module as the feature network, with weights from a local file (never downloaded).

    ``module(x)`` gets float images ``(N, C, H, W)`` in [-1, 1] (``input_size``: resized first;
    ``channels``: grey repeated to RGB or RGB averaged to grey) and returns features ``(N, d)``,
    or a tuple ``(features, logits)`` (then the Inception Score uses the logits).
    """

    def __init__(self, module: Any, *, weights_path: str | Path | None = None, input_size: int | None = None,
                 channels: int | None = None, name: str | None = None) -> None:
        self.module = module
        self.weights_path = None if weights_path is None else Path(weights_path)
        self.input_size = input_size
        self.channels = channels
        self.name = name or type(module).__name__

    def fit(self, real: ImageSet) -> TorchModuleFeatures:
        if self.weights_path is not None:
            if not self.weights_path.is_file():
                raise DataError(
                    f"Feature network weights not found: {self.weights_path}",
                    hint="Give the path of a local safetensors or torch state-dict file; "
                    "synthkit downloads nothing.",
                )
            if self.weights_path.suffix == ".safetensors":
                from safetensors.torch import load_file

                state = load_file(str(self.weights_path))
            else:
                import torch

                state = torch.load(self.weights_path, map_location="cpu", weights_only=True)
            self.module.load_state_dict(state)
        try:
            self.module.eval()
        except NotImplementedError:  # a torch.export program's module: exported in eval mode already
            pass
        self.fitted_ = True
        return self

    def _forward(self, images: ImageSet) -> tuple[np.ndarray, np.ndarray | None]:
        import torch

        size = None if self.input_size is None else (self.input_size, self.input_size)
        feats, logits = [], []
        with torch.no_grad():
            for start in range(0, len(images), 256):
                out = self.module(_to_tensor(images.subset(slice(start, start + 256)), size, self.channels))
                if isinstance(out, (tuple, list)):
                    feats.append(out[0].float().flatten(1).numpy())
                    if len(out) > 1:
                        logits.append(out[1].float().flatten(1).numpy())
                else:
                    feats.append(out.float().flatten(1).numpy())
        return np.concatenate(feats).astype(np.float64), (np.concatenate(logits) if logits else None)

    def features(self, images: ImageSet) -> np.ndarray:
        return self._forward(images)[0]

    def probabilities(self, images: ImageSet) -> np.ndarray | None:
        logits = self._forward(images)[1]
        return None if logits is None else _softmax(logits.astype(np.float64))


#: Name of the JSON file stored inside a TorchScript feature network with its settings.
FEATURE_META_FILE = "synthkit.json"


def feature_network(path: str | Path, *, input_size: int | None = None, channels: int | None = None,
                    name: str | None = None) -> TorchModuleFeatures:
    """A TorchScript feature network from a local file (e.g. a scripted Inception-v3), on the CPU.

    Settings saved in the file (:func:`save_feature_network`) are used unless given here; the
    name defaults to the file's stem. Nothing is downloaded.
    """
    import torch

    path = Path(path)
    if not path.is_file():
        raise DataError(
            f"Feature network file not found: {path}",
            hint="Give the path of a local TorchScript file (torch.jit.save); synthkit downloads nothing.",
        )
    if path.suffix == ".safetensors":
        raise ConfigError(
            f"{path.name} holds weights only, not a network.",
            hint="Build the module yourself and pass TorchModuleFeatures(module, weights_path=...), "
            "or save a TorchScript file (torch.jit.script(module).save(...)) and pass its path.",
        )
    extra = {FEATURE_META_FILE: ""}
    kind = "torch.export (.pt2)" if path.suffix == ".pt2" else "TorchScript"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # torch 2.13 deprecates torch.jit
            if path.suffix == ".pt2":
                module = torch.export.load(str(path), extra_files=extra).module()
            else:
                module = torch.jit.load(str(path), map_location="cpu", _extra_files=extra)
    except Exception as exc:  # torch raises RuntimeError/ValueError/zip errors for a foreign file
        raise DataError(
            f"{path} is not a {kind} file torch {torch.__version__} can load ({type(exc).__name__}).",
            hint="Save the feature network with torch.jit.script(module).save(path) "
            "(or synthkit.evaluate.images.save_feature_network), or torch.export.save(...) as .pt2.",
        ) from exc
    meta: dict[str, Any] = {}
    if extra[FEATURE_META_FILE]:
        try:
            meta = json.loads(extra[FEATURE_META_FILE])
        except ValueError as exc:
            raise DataError(f"{path}: its {FEATURE_META_FILE} is not valid JSON.") from exc
    features = TorchModuleFeatures(
        module,
        input_size=input_size if input_size is not None else meta.get("input_size"),
        channels=channels if channels is not None else meta.get("channels"),
        name=name or meta.get("name") or path.stem,
    )
    features.source_ = str(path)
    return features


def save_feature_network(module: Any, path: str | Path, *, input_size: int | None = None,
                         channels: int | None = None, name: str | None = None) -> Path:
    """Script ``module`` (unless it already is) and save it with its settings, for :func:`feature_network`."""
    import torch

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        scripted = module if isinstance(module, torch.jit.ScriptModule) else torch.jit.script(module.eval())
    meta = json.dumps({"input_size": input_size, "channels": channels, "name": name}, sort_keys=True)
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.jit.save(scripted, buffer, _extra_files={FEATURE_META_FILE: meta})
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.{secrets.token_hex(8)}.tmp"
    try:  # via a temporary file and a rename: never half a file
        tmp.write_bytes(buffer.getvalue())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def _softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


# --- metrics -----------------------------------------------------------------------------------
def frechet_distance(a: np.ndarray, b: np.ndarray) -> float:
    """FID's Fréchet distance between Gaussians fitted to two feature sets."""
    from scipy import linalg

    mu1, mu2 = a.mean(0), b.mean(0)
    s1, s2 = np.atleast_2d(np.cov(a, rowvar=False)), np.atleast_2d(np.cov(b, rowvar=False))

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a singular product is handled just below
        covmean = linalg.sqrtm(s1 @ s2)
    if not np.isfinite(covmean).all():
        eye = np.eye(s1.shape[0]) * 1e-6
        covmean = linalg.sqrtm((s1 + eye) @ (s2 + eye))
    covmean = np.real(covmean)
    return float(max(((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2.0 * np.trace(covmean), 0.0))


def kernel_inception_distance(a: np.ndarray, b: np.ndarray, *, subsets: int = 20, subset_size: int = 500,
                              seed: int = 0) -> float:
    """KID: the unbiased MMD² with the cubic polynomial kernel, averaged over random subsets."""
    rng = np.random.default_rng(seed)
    m = min(subset_size, len(a), len(b))
    if m < 2:
        raise DataError("KID needs at least 2 real and 2 synthetic images.")
    d = a.shape[1]
    values = []
    for _ in range(subsets):
        x, y = a[rng.choice(len(a), m, replace=False)], b[rng.choice(len(b), m, replace=False)]
        kxx, kyy, kxy = (x @ x.T / d + 1) ** 3, (y @ y.T / d + 1) ** 3, (x @ y.T / d + 1) ** 3
        values.append((kxx.sum() - np.trace(kxx)) / (m * (m - 1)) + (kyy.sum() - np.trace(kyy)) / (m * (m - 1))
                      - 2.0 * kxy.mean())
    return float(np.mean(values))


def inception_score(probs: np.ndarray, *, splits: int = 10) -> float:
    """exp(E_x KL(p(y|x) || p(y))), averaged over ``splits`` parts."""
    scores = []
    for part in np.array_split(probs, min(splits, len(probs))):
        marginal = part.mean(0, keepdims=True)
        kl = (part * (np.log(part + 1e-12) - np.log(marginal + 1e-12))).sum(1).mean()
        scores.append(np.exp(kl))
    return float(np.mean(scores))


def precision_recall(real: np.ndarray, synthetic: np.ndarray, *, k: int = 3) -> tuple[float, float]:
    """k-NN precision and recall (Kynkäänniemi et al., 2019) of two feature sets."""
    def radii(x: np.ndarray) -> np.ndarray:
        d = _distances(x, x)
        kk = min(k, len(x) - 1)
        return np.sort(d, axis=1)[:, kk]

    d = _distances(real, synthetic)
    precision = float((d <= radii(real)[:, None]).any(axis=0).mean())
    recall = float((d <= radii(synthetic)[None, :]).any(axis=1).mean())
    return precision, recall


def _distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    sq = (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2.0 * a @ b.T
    return np.sqrt(np.maximum(sq, 0.0))


def memorisation(real: ImageSet, synthetic: ImageSet, *, copy_threshold: float = 0.25,
                 top: int = 8) -> dict[str, Any]:
    """Nearest-training-image distances of synthetic images (pixels in [0, 1]) and near-copies."""
    r = real.images.reshape(len(real), -1).astype(np.float64) / 255.0
    s = synthetic.images.reshape(len(synthetic), -1).astype(np.float64) / 255.0
    if len(real) < 2:
        raise DataError("Memorisation needs at least 2 real images.")
    rr = _distances(r, r)
    np.fill_diagonal(rr, np.inf)
    scale = float(np.median(rr.min(axis=1)))
    d = np.empty(len(s))
    nearest = np.empty(len(s), np.int64)
    for start in range(0, len(s), 1024):
        block = _distances(s[start : start + 1024], r)
        nearest[start : start + 1024] = block.argmin(axis=1)
        d[start : start + 1024] = block.min(axis=1)
    ratio = d / max(scale, 1e-12)
    order = np.argsort(ratio)[:top]
    return {
        "real_nn_median": scale,
        "ratios": ratio,
        "nn_ratio_median": float(np.median(ratio)),
        "copy_share": float((ratio < copy_threshold).mean()),
        "copies": int((ratio < copy_threshold).sum()),
        "closest_pairs": [
            {"synthetic": int(i), "real": int(nearest[i]), "distance": round(float(d[i]), 6),
             "ratio": round(float(ratio[i]), 6), "flagged": bool(ratio[i] < copy_threshold)}
            for i in order
        ],
    }


# --- the report --------------------------------------------------------------------------------
class ImageReport(BaseModel):
    """Quality and privacy of a synthetic image set against the real one; JSON and HTML."""

    model_config = ConfigDict(extra="forbid")

    metrics: dict[str, Metric]
    features: str = Field(description="Which feature network the quality metrics used.")
    closest_pairs: list[dict[str, Any]] = Field(default_factory=list)
    real_fingerprint: str
    synthetic_fingerprint: str
    n_real: int
    n_synthetic: int
    image_shape: list[int]
    created_at: str
    synthkit_version: str
    settings: dict[str, Any] = Field(default_factory=dict)
    notes: list[str] = Field(default_factory=list)
    #: PNG (base64) grids for the HTML: real samples, synthetic samples, closest pairs.
    grids: dict[str, str] = Field(default_factory=dict)
    format_version: int = IMAGE_REPORT_FORMAT_VERSION

    def value(self, name: str) -> float | None:
        metric = self.metrics.get(name)
        return None if metric is None else metric.value

    def section(self, section: str) -> dict[str, Metric]:
        return {k: m for k, m in self.metrics.items() if m.section == section}

    def summary_rows(self) -> list[tuple[str, str, str]]:
        return [(m.name, m.formatted(), m.meaning) for m in self.metrics.values()]

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json")

    def to_json(self, path: str | Path | None = None) -> str:
        """JSON with sorted keys; also written (atomically) to ``path``."""
        text = json.dumps(self.to_dict(), indent=2, sort_keys=True, allow_nan=False)
        if path is not None:
            write_atomic(Path(path), text + "\n")
        return text

    def to_html(self, path: str | Path | None = None) -> str:
        """One self-contained page: metrics table and the image grids (embedded PNG)."""
        rows = "".join(
            f"<tr><td><code>{html.escape(m.name)}</code></td><td>{html.escape(m.formatted())}</td>"
            f"<td>{'higher' if m.higher_is_better else 'lower'} is better</td>"
            f"<td>{html.escape(m.meaning)}</td></tr>"
            for m in self.metrics.values()
        )
        captions = {"real": "Real samples", "synthetic": "Synthetic samples",
                    "closest": "Closest pairs (top: synthetic, bottom: nearest training image)"}
        grids = "".join(
            f"<figure><img alt='{html.escape(captions.get(k, k))}' src='data:image/png;base64,{v}'>"
            f"<figcaption>{html.escape(captions.get(k, k))}</figcaption></figure>"
            for k, v in self.grids.items()
        )
        notes = "".join(f"<li>{html.escape(n)}</li>" for n in self.notes)
        page = (
            "<!doctype html><html><head><meta charset='utf-8'><title>synthkit image report</title>"
            "<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}"
            "td,th{border:1px solid #ccc;padding:4px 8px}img{image-rendering:pixelated}"
            "figure{display:inline-block;margin:1em}</style></head><body>"
            f"<h1>Synthetic images: quality and privacy</h1><p>{self.n_synthetic} synthetic vs "
            f"{self.n_real} real images of {'×'.join(map(str, self.image_shape))}; "
            f"features: {html.escape(self.features)}.</p>"
            "<table><tr><th>metric</th><th>value</th><th></th><th>meaning</th></tr>"
            f"{rows}</table>{grids}<ul>{notes}</ul></body></html>"
        )
        if path is not None:
            write_atomic(Path(path), page)
        return page


def evaluate_images(
    real: ImageSet,
    synthetic: ImageSet,
    *,
    features: ImageFeatures | str | Path | None = None,
    k: int = 3,
    copy_threshold: float = 0.25,
    max_images: int = 2000,
    seed: int = 0,
    grids: bool = True,
) -> ImageReport:
    """Compare ``synthetic`` images with the ``real`` (training) images; see the module docstring.

    ``features``: a feature network, the path of a TorchScript one (:func:`feature_network`),
    or None for the domain CNN. ``max_images`` caps how many of each set the quality metrics use
    (a seeded sample).
    """
    from synthkit import __version__

    for name, s in (("real", real), ("synthetic", synthetic)):
        if not isinstance(s, ImageSet):
            raise DataError(f"evaluate_images takes ImageSets; {name} is a {type(s).__name__}.")
        if len(s) < 2:
            raise DataError(f"evaluate_images needs at least 2 {name} images, got {len(s)}.")
    if real.shape != synthetic.shape:
        raise DataError(
            f"Real images are {real.shape}, synthetic ones {synthetic.shape}.",
            hint="Resize one set to the other (ImageSet.resized) before evaluating.",
        )
    rng = np.random.default_rng(seed)
    r = real.subset(np.sort(rng.permutation(len(real))[:max_images]))
    s = synthetic.subset(np.sort(rng.permutation(len(synthetic))[:max_images]))
    if isinstance(features, (str, Path)):
        features = feature_network(features)
    net = features if features is not None else DomainCNNFeatures(seed=seed)
    if not getattr(net, "fitted_", False):  # a fitted network is reused as given (benchmarks)
        net = net.fit(r)
    fr, fs = net.features(r), net.features(s)
    fid = frechet_distance(fr, fs)
    kid = kernel_inception_distance(fr, fs, seed=seed)
    precision, recall = precision_recall(fr, fs, k=k)
    probs = net.probabilities(s)
    mem = memorisation(real, synthetic, copy_threshold=copy_threshold)
    where = f" (features: {net.name})"
    metrics = [
        Metric(name="quality.fid", section="quality", value=fid, higher_is_better=False,
               meaning="Fréchet distance between real and synthetic feature distributions" + where + "."),
        Metric(name="quality.kid", section="quality", value=kid, higher_is_better=False,
               meaning="Kernel distance (unbiased MMD², cubic kernel) between the feature sets" + where + "."),
        Metric(name="quality.precision", section="quality", value=precision, higher_is_better=True,
               meaning=f"Share of synthetic images inside the real images' {k}-NN feature manifold (fidelity)."),
        Metric(name="quality.recall", section="quality", value=recall, higher_is_better=True,
               meaning=f"Share of real images inside the synthetic images' {k}-NN feature manifold (diversity)."),
        Metric(name="quality.inception_score", section="quality",
               value=None if probs is None else inception_score(probs), higher_is_better=True,
               meaning="Inception Score: confident and varied class predictions" + where + ".",
               note=None if probs is not None else "needs a classifier: labelled real images or a module giving logits"),
        Metric(name="privacy.image_nn_ratio_median", section="privacy", value=mem["nn_ratio_median"],
               higher_is_better=True, threshold=0.5,
               meaning="Median distance of a synthetic image to its nearest training image, over "
               "the median nearest-neighbour distance among training images."),
        Metric(name="privacy.image_copy_share", section="privacy", value=mem["copy_share"],
               higher_is_better=False, threshold=0.0,
               meaning=f"Share of synthetic images flagged as near-copies of a training image "
               f"(distance ratio under {copy_threshold})."),
    ]
    notes = [f"features: {net.name}"]
    if net.name.startswith("domain CNN"):
        notes.append("FID/KID/IS on domain-CNN features compare models on the same real set; "
                     "they are not comparable with published Inception-v3 figures.")
    if mem["copies"]:
        notes.append(f"{mem['copies']} synthetic image(s) are near-copies of training images; "
                     "see closest_pairs.")
    grid_images: dict[str, str] = {}
    if grids:
        grid_images = _grids(real, synthetic, mem["closest_pairs"], seed)
    return ImageReport(
        metrics={m.name: m for m in metrics},
        features=net.name,
        closest_pairs=mem["closest_pairs"],
        real_fingerprint=real.fingerprint(),
        synthetic_fingerprint=synthetic.fingerprint(),
        n_real=len(real),
        n_synthetic=len(synthetic),
        image_shape=list(real.shape),
        created_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        synthkit_version=__version__,
        settings={"k": k, "copy_threshold": copy_threshold, "max_images": max_images, "seed": seed,
                  "real_nn_median": mem["real_nn_median"]},
        notes=notes,
        grids=grid_images,
    )


def _grids(real: ImageSet, synthetic: ImageSet, pairs: list[dict[str, Any]], seed: int) -> dict[str, str]:
    rng = np.random.default_rng(seed)
    scale = max(1, 64 // max(real.height, real.width))

    def png(images: np.ndarray, columns: int) -> str:
        grid = image_grid(images[..., :3] if images.shape[3] == 4 else images, columns=columns, scale=scale)
        return base64.b64encode(encode_png(grid)).decode()

    out = {
        "real": png(real.images[np.sort(rng.permutation(len(real))[:40])], 10),
        "synthetic": png(synthetic.images[np.sort(rng.permutation(len(synthetic))[:40])], 10),
    }
    if pairs:
        top = np.stack([synthetic.images[p["synthetic"]] for p in pairs])
        bottom = np.stack([real.images[p["real"]] for p in pairs])
        out["closest"] = png(np.concatenate([top, bottom]), len(pairs))
    return out
