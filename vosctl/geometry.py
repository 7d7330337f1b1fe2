"""Crop geometry shared by the tracker and the training data, so both see identical crops.

Owner: throughput issue (#9) (torch crop path); the search-window rule is shared with training (#8).

A crop is a square window of side ``side`` (frame pixels) centred at ``(cx, cy)``, resampled to
``out`` pixels. Outside the frame the crop is filled with the ImageNet mean colour, which the
network's input normalisation maps to zero.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

# ImageNet mean in 0..255 RGB: normalises to 0, the least surprising padding for the network.
PAD_COLOUR = (124, 116, 104)


def template_side(width: float, height: float, context: float = 0.5) -> float:
    """SiamFC/SiamMask template window: the box plus ``context`` x its half-perimeter, made square."""
    pad = context * (width + height)
    return math.sqrt(max(width + pad, 1.0) * max(height + pad, 1.0))


def search_side(
    width: float,
    height: float,
    context: float,
    search_factor: float,
    frame_width: int | None = None,
    frame_height: int | None = None,
    cap_to_frame: bool = False,
) -> float:
    """Side (frame pixels) of the search window around an object of box size ``width`` x ``height``.

    ``search_factor`` times the template window (SiamMask); with ``cap_to_frame`` never wider than
    the frame's longer side, so a large object is not shrunk into a crop that is mostly padding.
    Training data and the tracker both call this, so they see the same scales.
    """
    side = template_side(width, height, context) * search_factor
    if cap_to_frame and frame_width and frame_height:
        side = min(side, float(max(frame_width, frame_height)))
    return side


def crop_matrix(cx: float, cy: float, side: float, out: int) -> np.ndarray:
    """2x3 affine matrix mapping frame coordinates to crop coordinates."""
    scale = out / side
    return np.array([[scale, 0.0, out / 2.0 - scale * cx], [0.0, scale, out / 2.0 - scale * cy]], dtype=np.float64)


def crop_image(
    image: np.ndarray,
    matrix: np.ndarray,
    size: int | tuple[int, int],
    out: np.ndarray | None = None,
    interpolation: int = cv2.INTER_LINEAR,
) -> np.ndarray:
    """Resample ``image`` (HxWx3 uint8, or one channel) into a crop of ``size`` (side, or (width, height)).

    Colour images are padded with :data:`PAD_COLOUR`, masks with 0; ``out`` is an optional
    preallocated destination (the tracker reuses its buffers every frame).
    """
    width, height = (size, size) if isinstance(size, int) else size
    border = PAD_COLOUR if image.ndim == 3 else 0
    return cv2.warpAffine(
        image, matrix, (width, height), dst=out, flags=interpolation, borderMode=cv2.BORDER_CONSTANT, borderValue=border
    )


def paste_crop(
    crop: np.ndarray,
    matrix: np.ndarray,
    width: int,
    height: int,
    out: np.ndarray | None = None,
    fill: float = 0.0,
) -> np.ndarray:
    """Inverse of :func:`crop_image` for a single-channel map: crop -> frame (``fill`` outside the crop)."""
    return cv2.warpAffine(
        crop,
        matrix,
        (width, height),
        dst=out,
        flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
        borderMode=cv2.BORDER_CONSTANT,
        borderValue=fill,
    )


def grid_matrix(matrix: np.ndarray, ratio: float) -> np.ndarray:
    """A frame->canvas matrix -> the frame->grid matrix of a map ``ratio`` times the canvas's size.

    Pixel centres as ``F.interpolate(align_corners=False)`` places them: canvas pixel u lies at grid
    coordinate (u + 0.5) * ratio - 0.5, so pasting a grid map with this matrix resamples it once,
    to where upsampling it to the canvas and pasting that would put it.
    """
    grid = matrix * ratio
    grid[:, 2] += 0.5 * ratio - 0.5
    return grid


def mask_box(mask: np.ndarray) -> tuple[float, float, float, float] | None:
    """Tight box (x, y, w, h) of the non-zero pixels, or None for an empty mask."""
    rows = np.flatnonzero(mask.any(1))
    if rows.size == 0:
        return None
    cols = np.flatnonzero(mask.any(0))
    return float(cols[0]), float(rows[0]), float(cols[-1] - cols[0] + 1), float(rows[-1] - rows[0] + 1)


def shift_matrix(matrix: np.ndarray, x0: int, y0: int) -> np.ndarray:
    """The frame->crop matrix for coordinates relative to the frame point (x0, y0) (a window's origin)."""
    shifted = matrix.copy()
    shifted[:, 2] += matrix[:, :2] @ np.array([x0, y0], np.float64)
    return shifted


def canvas_window(
    matrix: np.ndarray, canvas_width: int, canvas_height: int, frame_width: int, frame_height: int
) -> tuple[int, int, int, int]:
    """Frame rectangle (x0, y0, x1, y1), end exclusive, that a canvas covers, clipped to the frame.

    Every frame pixel :func:`paste_crop` can make non-zero lies inside it (bilinear sampling reaches
    one canvas pixel beyond the edge), so pasting into just this window equals pasting into the
    frame. Empty (x0 == x1 or y0 == y1) when the canvas lies outside the frame.
    """
    inverse = cv2.invertAffineTransform(matrix)
    corners = inverse @ np.array([[-1.0, -1.0, 1.0], [canvas_width, canvas_height, 1.0]]).T  # (2, 2): x, y rows
    xs, ys = np.sort(corners[0]), np.sort(corners[1])
    x0 = min(frame_width, max(0, math.floor(xs[0])))
    y0 = min(frame_height, max(0, math.floor(ys[0])))
    x1 = max(x0, min(frame_width, math.ceil(xs[1]) + 1))
    y1 = max(y0, min(frame_height, math.ceil(ys[1]) + 1))
    return x0, y0, x1, y1


# Canvas pixels per cell of a mask region: the network's stride-4 grid, where its mask path starts.
REGION_CELL = 4


def mask_region(
    canvas: tuple[int, int],
    boxes: list[tuple[float, float, float, float] | None],
    fraction: float,
    margin: float,
    stride: int = REGION_CELL,
) -> tuple[int, int, int, int] | None:
    """Where the network's mask path must run on a canvas this frame, or None for all of it.

    The region is the canvas's centre, ``fraction`` of each side, as (top, bottom, left, right)
    in ``stride``-pixel cells. A tracked object's canvas is centred on its last position, so its
    mask normally stays there; the region is used only when every box (each object's previous
    mask, (x, y, w, h) in canvas pixels), grown by ``margin`` x its longer side on every side,
    lies inside it. A None box (no previous mask), ``fraction`` >= 1 or a region as large as the
    canvas gives None. ``canvas``: (height, width) in pixels.
    """
    height, width = canvas
    grid_h, grid_w = height // stride, width // stride
    if fraction >= 1.0 or not boxes or grid_h < 2 or grid_w < 2:
        return None
    # Even sides, centred: the same region for every canvas of this size (one trace per size).
    side_h = max(2, min(grid_h, 2 * round(fraction * grid_h / 2)))
    side_w = max(2, min(grid_w, 2 * round(fraction * grid_w / 2)))
    if side_h == grid_h and side_w == grid_w:
        return None
    top, left = (grid_h - side_h) // 2, (grid_w - side_w) // 2
    bottom, right = top + side_h, left + side_w
    for box in boxes:
        if box is None:
            return None
        x, y, w, h = box
        grow = margin * max(w, h)
        if x - grow < left * stride or y - grow < top * stride:
            return None
        if x + w + grow > right * stride or y + h + grow > bottom * stride:
            return None
    return top, bottom, left, right


def smallest_mask_region(
    canvas: tuple[int, int],
    boxes: list[tuple[float, float, float, float] | None],
    fractions: tuple[float, ...],
    margin: float,
    stride: int = REGION_CELL,
) -> tuple[int, int, int, int] | None:
    """The smallest of the central regions ``fractions`` (each as in :func:`mask_region`) that
    holds every box with its margin, or None when none does. The mask path's cost follows the
    region's area, so a compact object gets the small one and a larger object the next. A fraction
    given twice is tried once."""
    for fraction in sorted(set(fractions)):
        region = mask_region(canvas, boxes, fraction, margin, stride)
        if region is not None:
            return region
    return None


def reaches_region_edge(
    mask_logits: np.ndarray | list[np.ndarray],
    region: tuple[int, int, int, int],
    logit_threshold: float,
    band: int = 3,
    stride: int = REGION_CELL,
) -> bool:
    """Does any mask reach the last ``band`` cells inside a mask region's edge (where it may have been cut)?

    ``mask_logits``: (N, H, W) mask logits from a search run with ``region``, ``stride`` of their
    pixels to a region cell (``REGION_CELL`` on the canvas, half that on the engine's stride-2 mask
    grid); a mask is where they exceed ``logit_threshold``. Sides that are the canvas's own edge do
    not count: nothing was cut there. ``band`` covers the reach of the mask path's 3x3 convolutions, whose
    zero padding at the region's edge differs from the whole-canvas run.
    """
    top, bottom, left, right = (v * stride for v in region)
    width = band * stride
    for logits in mask_logits:
        height, canvas_width = logits.shape
        inside = logits[top:bottom, left:right]
        strips = []
        if top > 0:
            strips.append(inside[:width])
        if bottom < height:
            strips.append(inside[-width:])
        if left > 0:
            strips.append(inside[:, :width])
        if right < canvas_width:
            strips.append(inside[:, -width:])
        if any(bool((strip > logit_threshold).any()) for strip in strips):
            return True
    return False


def region_run_doubtful(
    presence: np.ndarray,
    mask_logits: np.ndarray | list[np.ndarray],
    region: tuple[int, int, int, int],
    logit_threshold: float,
    presence_floor: float,
    stride: int = REGION_CELL,
) -> bool:
    """Must a search run with a mask ``region`` run again on the whole canvas?

    Yes when an object's presence is below ``presence_floor`` (the region drops the faint
    background outside it from the mask-weighted appearance check that feeds the presence; near
    the lost / found / memory thresholds that difference decides), and yes when a mask reaches
    the region's edge (:func:`reaches_region_edge`: it may have been cut). A run that is kept holds
    only confident objects, well inside the region. ``stride``: as in :func:`reaches_region_edge`.
    """
    if len(presence) and float(np.min(presence)) < presence_floor:
        return True
    return reaches_region_edge(mask_logits, region, logit_threshold, stride=stride)


class LocalMask:
    """One object's binary mask stored only over its bounding box: frame-size-independent memory.

    ``origin`` is the frame position of ``mask[0, 0]``; ``mask`` is uint8 0/255. Everything outside
    is 0. The tracker keeps each object's previous mask this way (the next frame's prior and the
    overlap tie-break), so a 4K frame costs what a 480p frame costs for the same object.
    """

    __slots__ = ("x0", "y0", "mask")

    def __init__(self, x0: int, y0: int, mask: np.ndarray) -> None:
        self.x0, self.y0, self.mask = x0, y0, mask

    @classmethod
    def empty(cls) -> LocalMask:
        return cls(0, 0, np.zeros((0, 0), np.uint8))

    @classmethod
    def from_window(cls, x0: int, y0: int, mask: np.ndarray) -> LocalMask:
        """From a boolean mask over a window at (x0, y0); trimmed to the mask's box (a copy)."""
        box = mask_box(mask)
        if box is None:
            return cls.empty()
        bx, by, bw, bh = (int(v) for v in box)
        return cls(x0 + bx, y0 + by, np.multiply(mask[by : by + bh, bx : bx + bw], 255, dtype=np.uint8))

    @classmethod
    def from_frame(cls, mask: np.ndarray) -> LocalMask:
        """From a frame-sized boolean mask."""
        return cls.from_window(0, 0, mask)

    @property
    def is_empty(self) -> bool:
        return self.mask.size == 0

    def box_in(self, matrix: np.ndarray) -> tuple[float, float, float, float] | None:
        """This mask's box (x, y, w, h) mapped by a frame->crop ``matrix`` (scale and shift only), or None if empty."""
        if self.is_empty:
            return None
        scale_x, scale_y = float(matrix[0, 0]), float(matrix[1, 1])
        x = scale_x * self.x0 + float(matrix[0, 2])
        y = scale_y * self.y0 + float(matrix[1, 2])
        return x, y, scale_x * self.mask.shape[1], scale_y * self.mask.shape[0]

    def crop(self, matrix: np.ndarray, size: tuple[int, int], out: np.ndarray) -> np.ndarray:
        """As :func:`crop_image` of the frame-sized mask (``size`` = (width, height)), from the box alone."""
        if self.is_empty:
            out.fill(0)
            return out
        return crop_image(self.mask, shift_matrix(matrix, self.x0, self.y0), size, out=out)

    def values_at(self, ys: np.ndarray, xs: np.ndarray) -> np.ndarray:
        """The mask's values (uint8 0/255) at frame pixels (``ys``, ``xs``); 0 outside its box."""
        out = np.zeros(ys.shape, np.uint8)
        if self.is_empty:
            return out
        rows, cols = ys - self.y0, xs - self.x0
        inside = (rows >= 0) & (rows < self.mask.shape[0]) & (cols >= 0) & (cols < self.mask.shape[1])
        out[inside] = self.mask[rows[inside], cols[inside]]
        return out

    def paste_into(self, target: np.ndarray, x0: int, y0: int) -> None:
        """Write this mask into ``target``, a window whose frame origin is (x0, y0) (other pixels untouched)."""
        if self.is_empty:
            return
        h, w = target.shape
        mh, mw = self.mask.shape
        ax0, ay0 = max(self.x0, x0), max(self.y0, y0)
        ax1, ay1 = min(self.x0 + mw, x0 + w), min(self.y0 + mh, y0 + h)
        if ax1 <= ax0 or ay1 <= ay0:
            return
        target[ay0 - y0 : ay1 - y0, ax0 - x0 : ax1 - x0] = self.mask[
            ay0 - self.y0 : ay1 - self.y0, ax0 - self.x0 : ax1 - self.x0
        ]

    def to_frame(self, width: int, height: int) -> np.ndarray:
        """The frame-sized uint8 0/255 mask (for tests and one-off uses, never per frame)."""
        frame = np.zeros((height, width), np.uint8)
        self.paste_into(frame, 0, 0)
        return frame


def crop_torch(image, matrices: np.ndarray, size: tuple[int, int], pad: tuple[float, ...] = PAD_COLOUR):
    """Torch twin of :func:`crop_image` for a batch of crops of ONE image, on the image's device.

    image: (C, H, W) float tensor (0..255 for colour); matrices: (N, 2, 3) frame->crop, translation
    and scale only (what :func:`crop_matrix` and the tracker make); size: (width, height). Returns
    (N, C, height, width) float32, bilinear, the outside filled with ``pad`` (per channel).
    ``grid_sample(align_corners=True)`` samples at pixel centres exactly as ``cv2.warpAffine``
    does; the values differ from it only by OpenCV's 1/32-pixel fixed-point rounding.
    """
    import torch
    import torch.nn.functional as F

    channels, height, width = image.shape
    out_w, out_h = size
    n = len(matrices)
    device = image.device
    m = torch.as_tensor(np.asarray(matrices, np.float64), device=device)
    # Frame coordinate of every crop pixel: p = (c - t) / s, then normalised to [-1, 1] (align_corners).
    cx = torch.arange(out_w, device=device, dtype=torch.float64)
    cy = torch.arange(out_h, device=device, dtype=torch.float64)
    gx = (cx[None] - m[:, 0, 2, None]) / m[:, 0, 0, None] * (2.0 / max(width - 1, 1)) - 1.0  # (N, w)
    gy = (cy[None] - m[:, 1, 2, None]) / m[:, 1, 1, None] * (2.0 / max(height - 1, 1)) - 1.0  # (N, h)
    grid = torch.stack([gx[:, None, :].expand(n, out_h, out_w), gy[:, :, None].expand(n, out_h, out_w)], -1)
    pad_t = torch.as_tensor(pad[:channels], dtype=torch.float32, device=device).view(1, channels, 1, 1)
    # Sample (image - pad) with zero padding, add pad back: outside = pad, edges blend towards it like
    # OpenCV's BORDER_CONSTANT.
    source = (image.float()[None] - pad_t).expand(n, channels, height, width)
    crops = F.grid_sample(source, grid.float(), mode="bilinear", padding_mode="zeros", align_corners=True)
    return crops + pad_t
