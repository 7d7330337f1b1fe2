"""The presence / lost policy: is an object visible in this frame, and how wide to look while it is not.

Pure functions over a few per-object signals, so the policy can be tested and tuned without a
network or a video. The tracker gathers the signals, asks :func:`is_visible`, and sizes a lost
object's search canvas with :func:`lost_search_growth`.

Owner: accuracy issue (#8).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class PresenceConfig:
    # A tracked object stays visible while its mask looks like its template (cosine of the masked
    # search features with the template's foreground features) and its score is above the floor.
    lost_similarity: float = 0.75
    lost_threshold: float = 0.0
    # A lost object is re-acquired only when both the score and the similarity are clearly high ...
    found_threshold: float = 0.1
    found_similarity: float = 0.85
    # ... and the re-found mask has a plausible size (area / last known area).
    reacquire_area_range: tuple[float, float] = (0.25, 4.0)
    min_area: float = 4.0  # frame pixels; a smaller mask is no object
    lost_growth: float = 1.25  # while lost, the search canvas grows by this factor per frame ...
    lost_max_scale: float = 2.5  # ... up to this multiple of the normal crop (same scale, more area)


@dataclass(frozen=True)
class PresenceSignals:
    """What the tracker measured for one object in one frame."""

    score: float  # centre-score peak (0..1)
    similarity: float  # appearance similarity of the masked search features to the template (-1..1)
    area: float  # the object's own mask area in frame pixels, before objects compete for pixels
    last_area: float  # smoothed area while it was last visible (0 if unknown)
    presence: float = 1.0  # learned presence probability where the network has a presence head


def is_visible(was_lost: bool, signals: PresenceSignals, config: PresenceConfig) -> bool:
    """Decide whether the object is visible now (hysteresis: re-acquiring is harder than keeping)."""
    if signals.area < config.min_area:
        return False
    if was_lost:
        if signals.score < config.found_threshold or signals.similarity < config.found_similarity:
            return False
        if signals.last_area > 0:
            ratio = signals.area / signals.last_area
            low, high = config.reacquire_area_range
            return low <= ratio <= high
        return True
    return signals.score >= config.lost_threshold and signals.similarity >= config.lost_similarity


def lost_search_growth(lost_frames: int, config: PresenceConfig) -> float:
    """Factor by which a lost object's search canvas is widened (bounded for any number of frames)."""
    if lost_frames <= 0:
        return 1.0
    # Compare in log space: ``growth ** lost_frames`` overflows a float after a few thousand frames.
    import math

    steps_to_max = math.log(config.lost_max_scale) / math.log(config.lost_growth) if config.lost_growth > 1 else 0
    if lost_frames >= steps_to_max:
        return config.lost_max_scale
    return min(config.lost_growth**lost_frames, config.lost_max_scale)
