"""vosctl: fast semi-supervised video object segmentation.

Heavy modules (torch, the model) are imported lazily so that ``vosctl --help`` stays instant.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

__all__ = ["Segmenter", "SegmenterConfig", "__version__"]

if TYPE_CHECKING:  # pragma: no cover
    from vosctl.tracker import Segmenter, SegmenterConfig


def __getattr__(name: str) -> Any:
    if name in ("Segmenter", "SegmenterConfig"):
        from vosctl import tracker

        return getattr(tracker, name)
    raise AttributeError(f"module 'vosctl' has no attribute {name!r}")
