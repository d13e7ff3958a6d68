"""Images as sources and sinks: a folder of PNG/JPEG files, a ``.npy`` array, or an array in memory.

``read_images`` returns an :class:`~synthkit.images.ImageSet`. A folder whose images sit in
sub-folders is a labelled set (``digits/3/a.png`` has label ``"3"``); a flat folder is unlabelled.
``size=`` resizes every image (antialiased bilinear), ``channels=`` converts to grey (1), RGB (3)
or RGBA (4); without ``size``, images of different sizes are an error that says so.

``write_images`` is a sink like every other: it writes only an ImageSet that a passing policy
Decision was made for (``decision.data_fingerprint == images.fingerprint()``), and atomically. A
folder (``format="png"``, the default for a path without ``.npy``) is written into a temporary
folder beside it and renamed into place, one PNG per image, in class sub-folders when the set is
labelled; ``.npy`` writes the uint8 array (and, for a labelled set, ``<name>.labels.csv``).

PNG is read and written with synthkit's own codec (no dependency); JPEG needs Pillow
(``pip install 'synthkit[images]'``).
"""

from __future__ import annotations

import os
import re
import secrets
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from synthkit.connectors.files import _local_path, _refuse_other_data, _require_passing
from synthkit.errors import (
    DataError,
    EmptyDataError,
    MissingDependencyError,
    ReadError,
    SinkExistsError,
    SourceNotFoundError,
    UnsupportedFormatError,
)
from synthkit.images import LABEL, ImageSet, decode_png, encode_png, resize

__all__ = ["IMAGE_EXTENSIONS", "read_images", "write_images"]

#: File extensions read from a folder.
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg")
_NAME = re.compile(r"^[A-Za-z0-9_.\- ]+$")


# --- reading -----------------------------------------------------------------------------------
def read_images(
    source: Any,
    *,
    labels: Any = None,
    size: int | tuple[int, int] | None = None,
    channels: int | None = None,
) -> ImageSet:
    """Read images into an ImageSet: a folder path, a ``.npy`` path, an array or an ImageSet.

    ``labels``: for an array or ``.npy``, one class per image (a ``.npy`` file's
    ``<name>.labels.csv`` is read when present); for a folder, ``labels=False`` ignores class
    sub-folders. ``size``: resize every image to ``(H, W)`` (an int: square). ``channels``: 1
    (grey), 3 (RGB) or 4 (RGBA).
    """
    if isinstance(source, ImageSet):
        out = source if labels is None else ImageSet(source.images, _frame(labels), source.sources)
    elif isinstance(source, np.ndarray):
        out = ImageSet.from_array(source, None if labels is False else labels)
    elif isinstance(source, (str, os.PathLike)):
        path = _local_path(source)
        if not path.exists():
            raise SourceNotFoundError(
                f"No such file or folder: {path}",
                hint="Give a folder of .png/.jpg files (class sub-folders become labels) or a .npy file.",
            )
        if path.is_dir():
            out = _read_folder(path, labelled=labels is not False, size=size, channels=channels)
        elif path.suffix.lower() == ".npy":
            out = _read_npy(path, labels)
        elif path.suffix.lower() in IMAGE_EXTENSIONS:
            pixels = _read_file(path, channels)
            out = ImageSet.from_array(pixels[None], sources=[str(path)])
        else:
            raise UnsupportedFormatError(
                f"Cannot read images from '{path.name}'.",
                hint="Give a folder of .png/.jpg/.jpeg files, a .png/.jpg file or a .npy array.",
            )
    else:
        raise DataError(
            f"Cannot read images from a {type(source).__name__}.",
            hint="Give a folder path, a .npy path, a numpy array (N, H, W[, C]) or an ImageSet.",
        )
    if channels is not None:
        out = ImageSet(convert_channels(out.images, channels), out.labels, out.sources)
    if size is not None:
        out = out.resized(size)
    if len(out) == 0:
        raise EmptyDataError(f"No images in {_describe(source)}.")
    return out


def _read_folder(
    root: Path, *, labelled: bool, size: int | tuple[int, int] | None, channels: int | None
) -> ImageSet:
    files = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS
                   and not any(part.startswith(".") for part in p.relative_to(root).parts))
    if not files:
        raise EmptyDataError(
            f"The folder {root} holds no images.",
            hint="Put .png/.jpg/.jpeg files in it, or in one sub-folder per class.",
        )
    nested = [p for p in files if p.parent != root]
    if labelled and nested and len(nested) != len(files):
        loose = [p.name for p in files if p.parent == root][:3]
        raise DataError(
            f"{root} mixes images in class sub-folders with images at its top level ({loose}).",
            hint="Move every image into a class sub-folder, or read with labels=False.",
        )
    images, shapes = [], {}
    for path in files:
        pixels = _read_file(path, channels)
        if size is not None:
            pixels = resize(pixels[None], size)[0]
        shapes.setdefault(pixels.shape, str(path.relative_to(root)))
        images.append(pixels)
    if len(shapes) > 1:
        shown = "; ".join(f"{'×'.join(map(str, s))} (e.g. {p})" for s, p in list(shapes.items())[:4])
        raise DataError(
            f"The images in {root} differ in size or channels: {shown}.",
            hint="Pass size=(H, W) to resize them all (and channels=1 or 3 to convert colour).",
        )
    labels = None
    if labelled and nested:
        labels = pl.DataFrame({LABEL: [str(p.parent.relative_to(root)) for p in files]})
    return ImageSet(np.ascontiguousarray(np.stack(images)), labels, [str(p) for p in files])


def _read_file(path: Path, channels: int | None) -> np.ndarray:
    """uint8 (H, W, C) pixels of one PNG or JPEG file."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ReadError(f"Cannot read {path}: {exc}") from exc
    if path.suffix.lower() == ".png":
        pixels = decode_png(data, where=str(path))
    else:
        pixels = _decode_with_pillow(data, path)
    return convert_channels(pixels[None], channels)[0] if channels is not None else pixels


def _decode_with_pillow(data: bytes, path: Path) -> np.ndarray:
    try:
        from PIL import Image
    except ImportError as exc:
        raise MissingDependencyError(
            f"Reading {path.name} needs Pillow (JPEG decoding); PNG files need nothing extra.",
            hint="pip install 'synthkit[images]' (or convert the files to PNG).",
        ) from exc
    import io

    try:
        with Image.open(io.BytesIO(data)) as img:
            img.load()
            mode = img.mode if img.mode in ("L", "LA", "RGB", "RGBA") else "RGB"
            pixels = np.asarray(img.convert(mode), dtype=np.uint8)
    except Exception as exc:  # Pillow raises many types for bad files
        raise DataError(f"Cannot decode {path}: {exc}") from exc
    return pixels[..., None] if pixels.ndim == 2 else pixels


def _read_npy(path: Path, labels: Any) -> ImageSet:
    try:
        array = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise ReadError(
            f"Cannot read {path} as a numpy array: {exc}",
            hint="Give a .npy file written by numpy.save (object arrays are refused: no pickle).",
        ) from exc
    if labels is None:
        sidecar = _labels_path(path)
        if sidecar.is_file():
            labels = pl.read_csv(sidecar)
    elif labels is False:
        labels = None
    return ImageSet.from_array(array, labels)


def convert_channels(images: np.ndarray, channels: int) -> np.ndarray:
    """uint8 (N, H, W, C) to 1 (grey, ITU-R 601 luma), 3 (RGB) or 4 (RGBA) channels."""
    if channels not in (1, 3, 4):
        raise DataError(f"channels must be 1, 3 or 4, got {channels}.")
    c = images.shape[3]
    if c == channels:
        return images
    colour = images[..., :1].repeat(3, axis=3) if c in (1, 2) else images[..., :3]
    alpha = images[..., -1:] if c in (2, 4) else np.full(images.shape[:3] + (1,), 255, np.uint8)
    if channels == 1:
        luma = colour.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)
        return np.rint(luma).clip(0, 255).astype(np.uint8)[..., None]
    if channels == 3:
        return np.ascontiguousarray(colour)
    return np.ascontiguousarray(np.concatenate([colour, alpha], axis=3))


def _frame(labels: Any) -> pl.DataFrame | None:
    if labels is None or labels is False:
        return None
    if isinstance(labels, pl.DataFrame):
        return labels
    return pl.DataFrame({LABEL: list(np.asarray(labels).tolist())})


def _labels_path(path: Path) -> Path:
    return path.with_name(path.stem + ".labels.csv")


def _describe(source: Any) -> str:
    return str(source) if isinstance(source, (str, os.PathLike)) else f"the given {type(source).__name__}"


# --- writing -----------------------------------------------------------------------------------
def write_images(
    images: ImageSet,
    destination: str | os.PathLike[str],
    *,
    decision: Any,
    format: str | None = None,
    overwrite: bool = False,
) -> Path:
    """Write ``images`` to a PNG folder or a ``.npy`` file, only with a passing Decision for them.

    Fails closed: without a Decision whose ``passed`` is True and whose ``data_fingerprint``
    equals ``images.fingerprint()``, nothing is written. ``format``: ``"png"`` (a folder, the
    default unless the path ends in ``.npy``) or ``"npy"``. An existing destination is kept
    unless ``overwrite=True``. Returns the absolute path.
    """
    if not isinstance(images, ImageSet):
        raise DataError(
            f"write_images takes an ImageSet, got {type(images).__name__}.",
            hint="Wrap arrays with synthkit.images.ImageSet.from_array(array, labels).",
        )
    dest = _local_path(destination)
    fmt = (format or ("npy" if dest.suffix.lower() == ".npy" else "png")).lower().lstrip(".")
    if fmt not in ("png", "npy"):
        raise UnsupportedFormatError(f"Unknown image format '{format}'.", hint="Use 'png' or 'npy'.")
    expected = _require_passing(decision)
    actual = images.fingerprint()
    if actual != expected:
        raise _refuse_other_data(expected, actual)
    if dest.exists() and not overwrite:
        raise SinkExistsError(
            f"{dest} already exists; nothing was written.", hint="Pass overwrite=True to replace it."
        )
    dest.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "npy":
        _write_npy(images, dest)
    else:
        _write_folder(images, dest)
    return dest.absolute()


def _write_folder(images: ImageSet, dest: Path) -> None:
    if dest.exists() and not dest.is_dir():
        raise SinkExistsError(f"{dest} exists and is not a folder.", hint="Choose another path.")
    from synthkit.artifacts import staged_dir

    # written in a staging folder that replaces dest only when every image is in it
    with staged_dir(dest, overwrite=True) as tmp:
        values = images.label_values()
        width = max(5, len(str(len(images) - 1)))
        for i in range(len(images)):
            folder = tmp
            if values is not None:
                folder = tmp / _folder_name(values[i])
                folder.mkdir(exist_ok=True)
            (folder / f"{i:0{width}d}.png").write_bytes(encode_png(images.images[i]))


def _folder_name(value: Any) -> str:
    name = str(value)
    if not name or name in (".", "..") or not _NAME.match(name):
        raise DataError(
            f"The label {value!r} cannot be a folder name.",
            hint="Write to .npy instead, or relabel with letters, digits, '_', '-', '.' and spaces.",
        )
    return name


def _write_npy(images: ImageSet, dest: Path) -> None:
    token = secrets.token_hex(8)
    written: list[tuple[Path, Path]] = []
    try:
        tmp = dest.parent / f".{dest.name}.{token}.tmp"
        with open(tmp, "wb") as fh:
            np.save(fh, images.images, allow_pickle=False)
            fh.flush()
            os.fsync(fh.fileno())
        written.append((tmp, dest))
        sidecar = _labels_path(dest)
        if images.labels is not None:
            tmp_labels = dest.parent / f".{sidecar.name}.{token}.tmp"
            images.labels.write_csv(tmp_labels)
            written.append((tmp_labels, sidecar))
        for src, target in reversed(written):  # labels first: the array appears last
            os.replace(src, target)
        if images.labels is None and sidecar.exists():
            sidecar.unlink()  # a stale sidecar would relabel the new array
    except BaseException:
        for src, _ in written:
            src.unlink(missing_ok=True)
        raise
