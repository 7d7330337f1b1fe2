"""Video I/O for vosctl: streaming readers, first-frame prompts, atomic streaming sinks.

Importing this package does not import torch or PyAV (PyAV is imported when a video is opened
or written).
"""

from __future__ import annotations

from vosctl.io.atomic import AtomicPath, atomic_write, replace_path, temp_path_for
from vosctl.io.palette import DAVIS_PALETTE, DAVIS_PALETTE_BYTES, colour_of
from vosctl.io.prompts import Box, boxes_prompt, boxes_to_prompt, parse_box, read_mask_prompt
from vosctl.io.sinks import (
    ALPHA_FORMATS,
    TRACK_CSV_FIELDS,
    AlphaSink,
    ObjectResultLike,
    OverlayVideoSink,
    PngMaskSink,
    Sink,
    TrackCsvSink,
    TrackSink,
    render_overlay,
)
from vosctl.io.video import (
    DEFAULT_FOLDER_FPS,
    FRAME_EXTENSIONS,
    Frame,
    FrameFolderSource,
    FrameSource,
    VideoFileSource,
    natural_key,
    open_video,
    rotate_upright,
)

__all__ = [
    "ALPHA_FORMATS",
    "DAVIS_PALETTE",
    "DAVIS_PALETTE_BYTES",
    "DEFAULT_FOLDER_FPS",
    "FRAME_EXTENSIONS",
    "TRACK_CSV_FIELDS",
    "AlphaSink",
    "AtomicPath",
    "Box",
    "Frame",
    "FrameFolderSource",
    "FrameSource",
    "ObjectResultLike",
    "OverlayVideoSink",
    "PngMaskSink",
    "Sink",
    "TrackCsvSink",
    "TrackSink",
    "VideoFileSource",
    "atomic_write",
    "boxes_prompt",
    "boxes_to_prompt",
    "colour_of",
    "natural_key",
    "open_video",
    "parse_box",
    "read_mask_prompt",
    "render_overlay",
    "replace_path",
    "rotate_upright",
    "temp_path_for",
]
