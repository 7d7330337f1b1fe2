"""Motion prediction: where to centre the next search window (SAMURAI-style, constant velocity).

The search crop is normally centred on the object's last position, so a fast mover can leave the
window between two frames. With ``MotionConfig.gain`` > 0 the window is centred ahead of it, along
a smoothed per-frame displacement of its box centre. Pure functions: the tracker keeps each
object's velocity and calls these.

Owner: accuracy issue (#8).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from vosctl.errors import require

Velocity = tuple[float, float]


@dataclass(frozen=True)
class MotionConfig:
    # How far ahead of the last position the search is centred, in smoothed per-frame displacements
    # (0: off, the last position; 1: constant velocity).
    gain: float = 0.0
    smoothing: float = 0.5  # weight of the newest displacement in the velocity average (1: no smoothing)
    # The shift never exceeds this share of the search window's side, so one bad mask (a spill that
    # moves the box centre) cannot throw the window off the object.
    max_shift: float = 0.25

    def __post_init__(self) -> None:
        require(self.gain >= 0.0, f"motion.gain must be >= 0, got {self.gain}")
        require(0.0 < self.smoothing <= 1.0, f"motion.smoothing must be in (0, 1], got {self.smoothing}")
        require(0.0 <= self.max_shift <= 0.5, f"motion.max_shift must be in [0, 0.5], got {self.max_shift}")


def update_velocity(velocity: Velocity, displacement: Velocity, config: MotionConfig) -> Velocity:
    """The velocity after one more observed per-frame displacement (exponential average)."""
    s = config.smoothing
    return (1 - s) * velocity[0] + s * displacement[0], (1 - s) * velocity[1] + s * displacement[1]


def search_centre(cx: float, cy: float, velocity: Velocity, window_side: float, config: MotionConfig) -> Velocity:
    """Centre of the next search window: the last centre moved ``gain`` velocities ahead, capped."""
    dx, dy = config.gain * velocity[0], config.gain * velocity[1]
    length, limit = math.hypot(dx, dy), config.max_shift * window_side
    if length > limit:  # keep the direction, shorten the step
        dx, dy = dx * limit / length, dy * limit / length
    return cx + dx, cy + dy
