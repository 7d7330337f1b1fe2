"""First-frame prompts: a mask image (label map) or boxes.

``read_mask_prompt`` turns the mask formats people actually have into a ``uint8`` label map
(0 = background, other values = object ids). How each kind of image is read:

* **Palette PNG** (DAVIS-2017 style, mode ``P``): the palette *indices* are the ids, kept as they
  are (ids 3 and 7 stay 3 and 7). Index 255 is "void" in DAVIS/VOC and becomes background, except
  when 255 is the only non-zero index: then the file is a binary mask and 255 becomes id 1.
* A mask with the same value everywhere (all 255 "void", all white) has no background and marks
  no object: it is refused.
* **Alpha** (RGBA / LA whose alpha is not uniformly opaque): alpha >= 128 is object 1.
* **Grayscale** (L, 16-bit, 1-bit): a small label map (all values < 128, at most 32 distinct
  values, e.g. 0/1 or 0/1/2 as written by ``cv2.imwrite(labels)``) keeps its values as ids;
  anything else (0/255, anti-aliased or JPEG masks) is binary: brighter than half the brightest
  pixel is object 1.
* **Colour** (RGB, or RGBA with opaque alpha): black is background. One colour -> id 1. Several
  flat colours that are all DAVIS palette colours -> each colour's palette index (the same ids the
  palette PNG would have given). Several other flat colours (at most 32, every two of them and
  black differing by at least 32 in some channel) -> ids 1..N in order of first appearance,
  scanning rows top to bottom. Anything else (anti-aliased edges, JPEG noise) -> one object,
  binary as for grayscale, on the brightest channel.

Every problem is an :class:`InputError` with a one-line message naming the file.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vosctl.errors import InputError
from vosctl.io.palette import DAVIS_PALETTE

VOID_ID = 255
MAX_COLOUR_OBJECTS = 32
"""More distinct colours than this in an RGB mask is read as one anti-aliased object."""
MIN_COLOUR_DISTANCE = 32
"""Colour-coded masks need colours at least this far apart (largest channel difference)."""


def read_mask_prompt(path: str | os.PathLike[str], width: int, height: int) -> np.ndarray:
    """Read a first-frame mask as a ``height x width`` uint8 label map (see the module docs)."""
    from PIL import Image, UnidentifiedImageError

    mask_path = Path(path)
    if not mask_path.is_file():
        raise InputError(f"mask {mask_path} does not exist")
    try:
        with Image.open(mask_path) as image:
            try:
                image.load()
            except Exception as error:  # noqa: BLE001 - a damaged file can make any codec fail in any way
                raise InputError(f"cannot read mask {mask_path}: {error or type(error).__name__}") from None
            labels = _labels_from_image(image)
    except (UnidentifiedImageError, Image.DecompressionBombError, OSError, ValueError, SyntaxError) as error:
        raise InputError(f"cannot read mask {mask_path}: {error}") from None
    mask_h, mask_w = labels.shape
    if (mask_w, mask_h) != (width, height):
        raise InputError(f"mask {mask_path} is {mask_w}x{mask_h} but the video frames are {width}x{height}")
    if not labels.any():
        raise InputError(f"mask {mask_path} has no object (every pixel is background)")
    if labels.min() == labels.max():
        # One value everywhere: an all-white or all-255 ("void" in DAVIS) image, not an outline.
        raise InputError(
            f"mask {mask_path} has no background: every pixel has the same value (255 is 'void'); "
            "draw the object on a background of 0"
        )
    return np.ascontiguousarray(labels)


def _labels_from_image(image: object) -> np.ndarray:
    from PIL import Image

    assert isinstance(image, Image.Image)
    mode = image.mode
    if mode == "P":
        return _from_palette(np.asarray(image))
    if mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        alpha = np.asarray(image.getchannel("A"))
        if alpha.min() < 255:  # a real cut-out: the alpha is the mask
            return (alpha >= 128).astype(np.uint8)
        image = image.convert("RGB" if mode in ("RGBA", "RGBa") else "L")
        mode = image.mode
    if mode == "1":
        return np.asarray(image, dtype=np.uint8)
    if mode in ("L", "I", "I;16", "I;16B", "I;16L", "F"):
        return _from_gray(np.asarray(image))
    if mode != "RGB":  # CMYK, YCbCr, LAB, HSV, ...
        image = image.convert("RGB")
    return _from_colour(np.asarray(image))


def _from_palette(indices: np.ndarray) -> np.ndarray:
    labels = indices.astype(np.uint8, copy=True)
    present = np.unique(labels)
    if present[-1] == VOID_ID and np.all(np.isin(present, (0, VOID_ID))):
        return (labels == VOID_ID).astype(np.uint8)  # binary mask stored as 0/255 palette indices
    labels[labels == VOID_ID] = 0
    return labels


def _from_gray(values: np.ndarray) -> np.ndarray:
    present = np.unique(values)
    if present[-1] < 128 and len(present) <= MAX_COLOUR_OBJECTS + 1 and np.all(present == np.round(present)):
        return values.astype(np.uint8)  # a label map saved as grayscale: keep the ids
    return _binary(values.astype(np.float32))


def _binary(values: np.ndarray) -> np.ndarray:
    """Object 1 where brighter than half the brightest value (scale-free: 0/1, 0/255, 0/65535)."""
    peak = float(values.max()) if values.size else 0.0
    if peak <= 0:
        return np.zeros(values.shape, np.uint8)
    return (values > peak / 2).astype(np.uint8)


def _pack_rgb(rgb: np.ndarray) -> np.ndarray:
    """One int per pixel (0xRRGGBB) so colours can be counted with np.unique."""
    rgb32 = rgb.astype(np.uint32)
    return (rgb32[..., 0] << 16) | (rgb32[..., 1] << 8) | rgb32[..., 2]


_DAVIS_PACKED = {int(code): index for index, code in enumerate(_pack_rgb(DAVIS_PALETTE[None])[0]) if index}


def _flat_colours(packed: np.ndarray) -> bool:
    """True when the colours (black included) are far apart, as in a colour-coded mask.

    Anti-aliased or JPEG-compressed masks have near-duplicate colours (254,255,255 beside
    255,255,255, dark greys at the edges); those are read as one binary object instead.
    """
    rgb = np.stack([(packed >> 16) & 0xFF, (packed >> 8) & 0xFF, packed & 0xFF], axis=1).astype(np.int16)
    rgb = np.vstack([rgb, np.zeros((1, 3), np.int16)])  # black must be far from every colour too
    distance = np.abs(rgb[:, None, :] - rgb[None, :, :]).max(axis=2)
    np.fill_diagonal(distance, 255)
    return bool(distance.min() >= MIN_COLOUR_DISTANCE)


def _from_colour(rgb: np.ndarray) -> np.ndarray:
    packed = _pack_rgb(rgb)
    colours, first_seen, inverse = np.unique(packed.ravel(), return_index=True, return_inverse=True)
    foreground = colours != 0
    colours_fg = colours[foreground]
    if len(colours_fg) == 0:
        return np.zeros(packed.shape, np.uint8)
    if len(colours_fg) == 1:
        return (packed != 0).astype(np.uint8)
    lut = np.zeros(len(colours), np.uint8)
    if all(int(code) in _DAVIS_PACKED for code in colours_fg):
        lut[foreground] = [_DAVIS_PACKED[int(code)] for code in colours_fg]
    elif len(colours_fg) <= MAX_COLOUR_OBJECTS and _flat_colours(colours_fg):
        order = np.argsort(first_seen[foreground], kind="stable")  # raster order of first pixel
        ids = np.empty(len(colours_fg), np.uint8)
        ids[order] = np.arange(1, len(colours_fg) + 1)
        lut[foreground] = ids
    else:
        return _binary(rgb.max(axis=2).astype(np.float32))
    return lut[inverse.reshape(packed.shape)]


@dataclass(frozen=True)
class Box:
    """A first-frame box in pixels: top-left corner ``(x, y)``, size ``w x h``."""

    x: float
    y: float
    w: float
    h: float

    def __str__(self) -> str:
        return ",".join(f"{v:g}" for v in (self.x, self.y, self.w, self.h))


def parse_box(text: str) -> Box:
    """Parse ``"X,Y,W,H"`` (pixels; integers or decimals, spaces allowed) into a :class:`Box`."""
    parts = [part.strip() for part in str(text).split(",")]
    try:
        if len(parts) != 4:
            raise ValueError
        x, y, w, h = (float(part) for part in parts)
    except ValueError:
        raise InputError(f"box '{text}' is not X,Y,W,H (four numbers in pixels, e.g. 120,80,60,40)") from None
    if not all(np.isfinite((x, y, w, h))):
        raise InputError(f"box '{text}' has a non-finite number")
    return Box(x, y, w, h)


def boxes_prompt(boxes: Iterable[Box | str | Sequence[float]], width: int, height: int) -> list[Box]:
    """Validate first-frame boxes against the frame size; object ids are 1..N in the given order.

    Each box needs a positive width and height and must overlap the frame; a box partly outside
    is clipped to the frame, a box entirely outside is an :class:`InputError` (naming the box and
    the frame size).
    """
    result: list[Box] = []
    for item in boxes:
        box = item if isinstance(item, Box) else parse_box(item) if isinstance(item, str) else Box(*map(float, item))
        if box.w <= 0 or box.h <= 0:
            raise InputError(f"box {box} has no area (width and height must be positive)")
        x0, y0 = max(box.x, 0.0), max(box.y, 0.0)
        x1, y1 = min(box.x + box.w, float(width)), min(box.y + box.h, float(height))
        if x1 <= x0 or y1 <= y0:
            raise InputError(f"box {box} lies entirely outside the {width}x{height} frame")
        result.append(Box(x0, y0, x1 - x0, y1 - y0))
    if not result:
        raise InputError("no box given")
    if len(result) > 254:
        raise InputError(f"{len(result)} boxes given; at most 254 objects are supported")
    return result


boxes_to_prompt = boxes_prompt
"""Alias (the name used in docs/DESIGN.md)."""
