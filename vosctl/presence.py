"""The presence / lost policy: is an object visible in this frame, and where to look while it is not.

Pure functions over a few per-object signals, so the policy can be tested and tuned without a
network or a video. The tracker gathers the signals, asks :func:`update_presence`, and places a
lost object's search canvas with :func:`lost_search_plan`.

Two rules, chosen by what the network offers:

- **learned** (networks with a presence head, trained on present, absent, occluded and look-alike
  crops, as SAM 2's object-score head): an object is lost after ``lost_patience`` consecutive
  frames with presence below ``lost_presence``, and found again when presence reaches
  ``found_presence`` with a plausible mask size (hysteresis: finding is harder than keeping).
- **appearance** (the first model, no presence head): the cosine similarity of the masked search
  features to the template and the centre score, with the thresholds that model shipped with.

Owner: accuracy issue (#8).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from vosctl.errors import require


@dataclass(frozen=True)
class PresenceConfig:
    # Learned rule (presence head).
    lost_presence: float = 0.3
    found_presence: float = 0.6
    lost_patience: int = 2  # consecutive low-presence frames before an object is declared lost
    # Appearance rule (models without a presence head).
    lost_similarity: float = 0.75
    lost_threshold: float = 0.0
    found_threshold: float = 0.1
    found_similarity: float = 0.85
    # Both: a re-found mask must have a plausible size (area / last known area) ...
    reacquire_area_range: tuple[float, float] = (0.25, 4.0)
    min_area: float = 4.0  # ... and a mask smaller than this (frame pixels) is no object.
    # While lost: the canvas first grows around the last position, by ``lost_growth`` per frame up
    # to ``lost_max_scale`` times the normal crop (same scale, more area) ...
    lost_growth: float = 1.25
    lost_max_scale: float = 2.5
    # ... then sweeps the whole frame tile by tile at the crop's scale, one tile per frame, so an
    # object re-entering anywhere is found within a bounded number of frames at a bounded cost.
    sweep_after: int = 8

    def __post_init__(self) -> None:
        lo, hi = self.reacquire_area_range
        require(0.0 <= lo <= hi, f"presence.reacquire_area_range must be LOW,HIGH with 0 <= LOW <= HIGH, got {lo},{hi}")
        require(self.lost_patience >= 0, f"presence.lost_patience must be >= 0, got {self.lost_patience}")
        require(self.lost_growth >= 1.0, f"presence.lost_growth must be >= 1, got {self.lost_growth}")
        require(self.lost_max_scale >= 1.0, f"presence.lost_max_scale must be >= 1, got {self.lost_max_scale}")
        require(self.sweep_after >= 0, f"presence.sweep_after must be >= 0, got {self.sweep_after}")


@dataclass(frozen=True)
class PresenceSignals:
    """What the tracker measured for one object in one frame."""

    score: float  # centre-score peak (0..1)
    similarity: float  # appearance similarity of the masked search features to the template (-1..1)
    area: float  # the object's own mask area in frame pixels, before objects compete for pixels
    last_area: float  # smoothed area while it was last visible (0 if unknown)
    presence: float | None = None  # learned presence probability; None without a presence head


@dataclass(frozen=True)
class PresenceDecision:
    visible: bool  # draw the mask this frame
    lost: bool  # the object is (now) lost; not visible and not lost: held for this frame
    low_frames: int  # consecutive frames with low presence while tracked


def _plausible_size(signals: PresenceSignals, config: PresenceConfig) -> bool:
    if signals.last_area <= 0:
        return True
    low, high = config.reacquire_area_range
    return low <= signals.area / signals.last_area <= high


def update_presence(
    was_lost: bool, low_frames: int, signals: PresenceSignals, config: PresenceConfig
) -> PresenceDecision:
    """The object's presence after this frame, from its state before it (hysteresis, patience)."""
    if signals.area < config.min_area:
        if was_lost or signals.presence is None:
            return PresenceDecision(False, True, 0)
        return _low(low_frames, config)  # an empty mask counts as weak evidence (nothing to draw anyway)
    if signals.presence is None:  # appearance rule
        if was_lost:
            found = (
                signals.score >= config.found_threshold
                and signals.similarity >= config.found_similarity
                and _plausible_size(signals, config)
            )
            return PresenceDecision(found, not found, 0)
        keep = signals.score >= config.lost_threshold and signals.similarity >= config.lost_similarity
        return PresenceDecision(keep, not keep, 0)
    if was_lost:
        found = signals.presence >= config.found_presence and _plausible_size(signals, config)
        return PresenceDecision(found, not found, 0)
    if signals.presence >= config.lost_presence:
        return PresenceDecision(True, False, 0)
    return _low(low_frames, config)


def _low(low_frames: int, config: PresenceConfig) -> PresenceDecision:
    """A tracked object with weak evidence: held (nothing drawn, not yet lost) until patience runs out.

    Held, it keeps its place and its last mask as the prior, so a one-frame dip (motion blur, a
    brief occlusion) does not throw it into the wide lost search.
    """
    low_frames += 1
    if low_frames >= config.lost_patience:
        return PresenceDecision(False, True, 0)
    return PresenceDecision(False, False, low_frames)


def is_visible(was_lost: bool, signals: PresenceSignals, config: PresenceConfig) -> bool:
    """Single-frame form of :func:`update_presence` (no patience carried over)."""
    return update_presence(was_lost, 0, signals, config).visible


def lost_search_growth(lost_frames: int, config: PresenceConfig) -> float:
    """Factor by which a lost object's search canvas is widened (bounded for any number of frames)."""
    if lost_frames <= 0:
        return 1.0
    if config.lost_growth <= 1:
        return 1.0
    # Compare in log space: ``growth ** lost_frames`` overflows a float after a few thousand frames.
    if lost_frames * math.log(config.lost_growth) >= math.log(config.lost_max_scale):
        return config.lost_max_scale
    return config.lost_growth**lost_frames


def sweep_centre(
    lost_frames: int,
    config: PresenceConfig,
    frame_width: int,
    frame_height: int,
    window: float,
) -> tuple[float, float] | None:
    """Centre (frame pixels) of this frame's sweep tile, or None while still searching near the last position.

    ``window`` is the side, in frame pixels, that the widest lost canvas covers. Tiles overlap by
    a quarter so an object on a tile border is seen whole in one of them; the sweep cycles for as
    long as the object stays lost, one tile per frame.
    """
    if lost_frames <= config.sweep_after:
        return None
    step = max(1.0, 0.75 * window)
    cols = max(1, math.ceil(max(0.0, frame_width - window) / step) + 1)
    rows = max(1, math.ceil(max(0.0, frame_height - window) / step) + 1)
    tile = (lost_frames - config.sweep_after - 1) % (cols * rows)
    row, col = divmod(tile, cols)
    cx = window / 2 + col * step if cols > 1 else frame_width / 2
    cy = window / 2 + row * step if rows > 1 else frame_height / 2
    return min(cx, frame_width - window / 2) if cols > 1 else cx, min(cy, frame_height - window / 2) if rows > 1 else cy
