"""ImageSet: images as one uint8 array ``N×H×W×C`` plus an optional labels frame; PNG in and out.

An :class:`ImageSet` is to images what a polars frame is to tables: what connectors read,
generators fit on and sample, evaluation compares and sinks write (gated by a Decision for its
:meth:`ImageSet.fingerprint`). Labels, when present, are a polars frame with one row per image
and a ``label`` column (the class; class sub-folders become labels when a folder is read).

PNG is encoded and decoded here with the standard library alone (zlib): 8- and 16-bit grey,
grey+alpha, RGB, RGBA and palette images, not interlaced. Nothing else is needed to read or write
PNG files or to embed an image grid in an HTML report; JPEG needs Pillow (the ``images`` extra).
"""

from __future__ import annotations

import hashlib
import struct
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import polars as pl

from synthkit.errors import DataError

#: Name of the class column of an ImageSet's labels frame.
LABEL = "label"
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_CHANNELS = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}  # PNG colour type -> samples per pixel


@dataclass(frozen=True, eq=False)
class ImageSet:
    """``images``: uint8 ``(N, H, W, C)`` with C in 1, 3 or 4; ``labels``: None or a frame of N rows.

    Build one with :meth:`from_array` (accepts ``N×H×W`` grey arrays and float arrays in [0, 1]),
    or read one with :func:`synthkit.connectors.images.read_images`.
    """

    images: np.ndarray
    labels: pl.DataFrame | None = None
    #: Where the images came from (paths of files, when read from a folder); not fingerprinted.
    sources: list[str] | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        images = self.images
        if not isinstance(images, np.ndarray) or images.dtype != np.uint8 or images.ndim != 4:
            raise DataError(
                "ImageSet.images must be a uint8 array of shape (N, H, W, C), got "
                f"{getattr(images, 'dtype', type(images).__name__)} of shape "
                f"{getattr(images, 'shape', '?')}.",
                hint="Use ImageSet.from_array(array), which converts grey and float images.",
            )
        if images.shape[3] not in (1, 3, 4):
            raise DataError(f"Images need 1, 3 or 4 channels, got {images.shape[3]}.")
        if images.shape[1] < 1 or images.shape[2] < 1:
            raise DataError(f"Images have no pixels: shape {images.shape}.")
        if self.labels is not None:
            if not isinstance(self.labels, pl.DataFrame):
                raise DataError("ImageSet.labels must be a polars DataFrame (or None).")
            if self.labels.height != images.shape[0]:
                raise DataError(
                    f"{self.labels.height} label rows for {images.shape[0]} images.",
                    hint="Give exactly one label row per image.",
                )
            if LABEL not in self.labels.columns:
                raise DataError(f"The labels frame needs a '{LABEL}' column, has {self.labels.columns}.")

    # --- construction ---------------------------------------------------------------------------
    @classmethod
    def from_array(
        cls, array: Any, labels: Any = None, *, sources: list[str] | None = None
    ) -> ImageSet:
        """An ImageSet from an array: uint8 (kept), or float/int in [0, 1] or [0, 255] (scaled).

        ``(N, H, W)`` is grey; ``labels`` may be a sequence or array of classes, or a polars
        frame with a ``label`` column.
        """
        images = to_uint8(np.asarray(array))
        if images.ndim == 3:
            images = images[..., None]
        if images.ndim != 4:
            raise DataError(
                f"Expected images of shape (N, H, W) or (N, H, W, C), got {images.shape}.",
                hint="Stack single images with np.stack(images) first.",
            )
        return cls(np.ascontiguousarray(images), _labels_frame(labels), sources)

    # --- facts ----------------------------------------------------------------------------------
    def __len__(self) -> int:
        return int(self.images.shape[0])

    def __repr__(self) -> str:
        classes = "" if self.labels is None else f", {len(self.classes)} classes"
        return f"ImageSet({len(self)} images of {self.height}×{self.width}×{self.channels}{classes})"

    @property
    def height(self) -> int:
        return int(self.images.shape[1])

    @property
    def width(self) -> int:
        return int(self.images.shape[2])

    @property
    def channels(self) -> int:
        return int(self.images.shape[3])

    @property
    def shape(self) -> tuple[int, int, int]:
        """``(H, W, C)`` of every image."""
        return (self.height, self.width, self.channels)

    @property
    def classes(self) -> list[Any]:
        """The distinct labels, sorted (empty without labels)."""
        if self.labels is None:
            return []
        return sorted(self.labels[LABEL].unique().to_list(), key=lambda v: (str(type(v)), v))

    def label_values(self) -> list[Any] | None:
        """The label of each image, or None."""
        return None if self.labels is None else self.labels[LABEL].to_list()

    def fingerprint(self) -> str:
        """``sha256:<hex>`` over the shape, the pixel bytes and the labels: what a Decision names."""
        h = hashlib.sha256()
        h.update(repr(("ImageSet", tuple(int(d) for d in self.images.shape))).encode())
        h.update(np.ascontiguousarray(self.images).tobytes())
        if self.labels is not None:
            from synthkit.frames import fingerprint

            h.update(b"\x00labels=" + fingerprint(self.labels).encode())
        return "sha256:" + h.hexdigest()

    # --- views ----------------------------------------------------------------------------------
    def subset(self, index: Any) -> ImageSet:
        """The images (and labels) at ``index`` (a slice, mask or integer array)."""
        idx = np.arange(len(self))[index]
        labels = None if self.labels is None else self.labels[idx.tolist()]
        sources = None if self.sources is None else [self.sources[i] for i in idx]
        return ImageSet(np.ascontiguousarray(self.images[idx]), labels, sources)

    def to_float(self) -> np.ndarray:
        """float32 ``(N, C, H, W)`` in [-1, 1]: what the image generators train on."""
        return (self.images.transpose(0, 3, 1, 2).astype(np.float32) / 127.5) - 1.0

    @classmethod
    def from_float(cls, array: np.ndarray, labels: Any = None) -> ImageSet:
        """The inverse of :meth:`to_float`: ``(N, C, H, W)`` in [-1, 1] (clipped) to uint8."""
        pixels = np.clip((np.asarray(array, dtype=np.float32) + 1.0) * 127.5, 0, 255)
        return cls.from_array(np.rint(pixels).astype(np.uint8).transpose(0, 2, 3, 1), labels)

    def resized(self, size: int | tuple[int, int]) -> ImageSet:
        """Every image resized to ``size`` (``(H, W)`` or one side): antialiased bilinear."""
        return ImageSet(resize(self.images, size), self.labels, self.sources)


def to_uint8(array: np.ndarray) -> np.ndarray:
    """uint8 pixels from uint8, bool, or numbers in [0, 1] (floats) or [0, 255]."""
    if array.dtype == np.uint8:
        return array
    if array.size == 0:
        return array.astype(np.uint8)
    if array.dtype == bool:
        return array.astype(np.uint8) * 255
    if not np.issubdtype(array.dtype, np.number):
        raise DataError(f"Images must be numbers, got dtype {array.dtype}.")
    values = array.astype(np.float64)
    if not np.isfinite(values).all():
        raise DataError("Images hold NaN or infinite values.")
    lo, hi = float(values.min()), float(values.max())
    if lo < 0:
        raise DataError(
            f"Pixel values below 0 (min {lo}).",
            hint="Give uint8 images, or floats in [0, 1]; map [-1, 1] images with (x + 1) / 2.",
        )
    if np.issubdtype(array.dtype, np.floating) and hi <= 1.0:
        values = values * 255.0
    elif hi > 255:
        raise DataError(
            f"Pixel values above 255 (max {hi}).",
            hint="Scale 16-bit images to 0..255 (e.g. x // 257) first.",
        )
    return np.rint(values).astype(np.uint8)


def _labels_frame(labels: Any) -> pl.DataFrame | None:
    if labels is None:
        return None
    if isinstance(labels, pl.DataFrame):
        return labels
    values = np.asarray(labels).tolist() if not isinstance(labels, Sequence) else list(labels)
    return pl.DataFrame({LABEL: values})


# --- resizing ----------------------------------------------------------------------------------
def resize(images: np.ndarray, size: int | tuple[int, int]) -> np.ndarray:
    """uint8 ``(N, H, W, C)`` to ``size`` (``(H, W)``; an int is a square): antialiased bilinear."""
    import torch
    import torch.nn.functional as F

    h, w = (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))
    if h < 1 or w < 1:
        raise DataError(f"Cannot resize to {h}×{w}.")
    if images.shape[1:3] == (h, w):
        return images
    x = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float()
    shrink = h < images.shape[1] or w < images.shape[2]
    out = F.interpolate(x, size=(h, w), mode="bilinear", align_corners=False, antialias=shrink)
    return out.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).contiguous().numpy()


# --- PNG ---------------------------------------------------------------------------------------
def encode_png(image: np.ndarray, *, compression: int = 6) -> bytes:
    """PNG bytes of one uint8 image ``(H, W)``, ``(H, W, 1|2|3|4)`` (grey, grey+alpha, RGB, RGBA)."""
    pixels = np.asarray(image)
    if pixels.dtype != np.uint8:
        raise DataError(f"encode_png takes uint8 pixels, got {pixels.dtype}.")
    if pixels.ndim == 2:
        pixels = pixels[..., None]
    if pixels.ndim != 3 or pixels.shape[2] not in (1, 2, 3, 4):
        raise DataError(f"encode_png takes (H, W[, C]) with C in 1..4, got {pixels.shape}.")
    h, w, c = pixels.shape
    colour = {1: 0, 2: 4, 3: 2, 4: 6}[c]
    rows = np.concatenate([np.zeros((h, 1), np.uint8), pixels.reshape(h, w * c)], axis=1)
    header = struct.pack(">IIBBBBB", w, h, 8, colour, 0, 0, 0)
    return b"".join([
        _PNG_SIGNATURE,
        _chunk(b"IHDR", header),
        _chunk(b"IDAT", zlib.compress(rows.tobytes(), compression)),
        _chunk(b"IEND", b""),
    ])


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def decode_png(data: bytes, *, where: str = "PNG data") -> np.ndarray:
    """uint8 ``(H, W, C)`` pixels of PNG bytes (C: 1 grey, 2 grey+alpha, 3 RGB, 4 RGBA).

    Palette images become RGB (RGBA with a transparency chunk); 16-bit samples keep their high
    byte; 1/2/4-bit grey is scaled to 0..255. Interlaced PNGs are refused with a clear error.
    """
    if not data.startswith(_PNG_SIGNATURE):
        raise DataError(f"{where} is not a PNG file (bad signature).")
    pos, header, palette, alpha, idat = 8, None, None, None, []
    while pos + 8 <= len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind = data[pos + 4 : pos + 8]
        body = data[pos + 8 : pos + 8 + length]
        if len(body) != length:
            raise DataError(f"{where} is truncated (chunk {kind!r}).")
        pos += 12 + length
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", body)
        elif kind == b"PLTE":
            palette = np.frombuffer(body, np.uint8).reshape(-1, 3)
        elif kind == b"tRNS":
            alpha = np.frombuffer(body, np.uint8)
        elif kind == b"IDAT":
            idat.append(body)
        elif kind == b"IEND":
            break
    if header is None or not idat:
        raise DataError(f"{where} is not a complete PNG file (no IHDR or IDAT).")
    width, height, depth, colour, _, _, interlace = header
    if colour not in _CHANNELS or depth not in (1, 2, 4, 8, 16):
        raise DataError(f"{where}: unsupported PNG colour type {colour} / bit depth {depth}.")
    if interlace:
        raise DataError(
            f"{where} is an interlaced PNG, which this reader does not decode.",
            hint="Re-save it without interlacing (or install Pillow: pip install 'synthkit[images]').",
        )
    try:
        raw = zlib.decompress(b"".join(idat))
    except zlib.error as exc:
        raise DataError(f"{where}: corrupt PNG image data ({exc}).") from exc
    samples = _CHANNELS[colour]
    bits = depth * samples
    stride = (width * bits + 7) // 8
    bpp = max(1, bits // 8)
    if len(raw) < height * (stride + 1):
        raise DataError(f"{where} is truncated (image data too short).")
    rows = _unfilter(raw, height, stride, bpp, where)
    if depth == 16:
        pixels = rows.reshape(height, width, samples, 2)[..., 0]
    elif depth == 8:
        pixels = rows.reshape(height, width, samples)
    else:
        unpacked = np.unpackbits(rows, axis=1).reshape(height, -1)
        groups = unpacked[:, : width * depth].reshape(height, width, depth)
        weights = (1 << np.arange(depth - 1, -1, -1)).astype(np.uint16)
        pixels = (groups * weights).sum(axis=2).astype(np.uint8)[..., None]
        if colour == 0:
            pixels = (pixels.astype(np.uint16) * 255 // ((1 << depth) - 1)).astype(np.uint8)
    if colour == 3:
        if palette is None:
            raise DataError(f"{where}: palette PNG without a palette.")
        index = pixels[..., 0]
        rgb = palette[np.minimum(index, len(palette) - 1)]
        if alpha is not None:
            table = np.full(len(palette), 255, np.uint8)
            table[: len(alpha)] = alpha[: len(palette)]
            return np.concatenate([rgb, table[index][..., None]], axis=2)
        return np.ascontiguousarray(rgb)
    return np.ascontiguousarray(pixels)


def _unfilter(raw: bytes, height: int, stride: int, bpp: int, where: str) -> np.ndarray:
    """Undo PNG's per-row filters (None, Sub, Up, Average, Paeth)."""
    buf = np.frombuffer(raw, np.uint8)[: height * (stride + 1)].reshape(height, stride + 1)
    out = np.zeros((height, stride), np.uint8)
    previous = np.zeros(stride, np.int32)
    for y in range(height):
        kind, line = int(buf[y, 0]), buf[y, 1:].astype(np.int32)
        if kind == 0:
            row = line
        elif kind == 2:
            row = (line + previous) & 0xFF
        elif kind in (1, 3, 4):
            row = np.zeros(stride, np.int32)
            for x in range(stride):
                left = row[x - bpp] if x >= bpp else 0
                if kind == 1:
                    pred = left
                elif kind == 3:
                    pred = (left + previous[x]) >> 1
                else:
                    up, corner = previous[x], (previous[x - bpp] if x >= bpp else 0)
                    p = left + up - corner
                    pa, pb, pc = abs(p - left), abs(p - up), abs(p - corner)
                    pred = left if pa <= pb and pa <= pc else (up if pb <= pc else corner)
                row[x] = (line[x] + pred) & 0xFF
        else:
            raise DataError(f"{where}: corrupt PNG (unknown row filter {kind}).")
        out[y] = row
        previous = row
    return out


def image_grid(images: np.ndarray, *, columns: int = 10, pad: int = 1, scale: int = 1) -> np.ndarray:
    """One uint8 image tiling ``images`` (N, H, W, C) in rows of ``columns``, with white padding."""
    n, h, w, c = images.shape
    cols = max(1, min(columns, n))
    rows = max(1, -(-n // cols))
    grid = np.full((rows * (h + pad) + pad, cols * (w + pad) + pad, c), 255, np.uint8)
    for i in range(n):
        r, k = divmod(i, cols)
        grid[pad + r * (h + pad) : pad + r * (h + pad) + h, pad + k * (w + pad) : pad + k * (w + pad) + w] = images[i]
    if scale > 1:
        grid = grid.repeat(scale, axis=0).repeat(scale, axis=1)
    return grid
