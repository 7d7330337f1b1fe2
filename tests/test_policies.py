"""The tracker's small decisions, tested without a network: presence policy, mask merging, appearance memory, motion."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from vosctl.errors import InputError
from vosctl.geometry import LocalMask, mask_region, reaches_region_edge, region_run_doubtful, smallest_mask_region
from vosctl.memory import AppearanceMemory, MemoryConfig
from vosctl.merge import merge_objects
from vosctl.model.network import TemplateEmbedding
from vosctl.motion import MotionConfig, search_centre, update_velocity
from vosctl.presence import PresenceConfig, PresenceSignals, is_visible, lost_search_growth


def test_lost_search_growth_is_bounded_for_any_length() -> None:
    config = PresenceConfig(lost_growth=1.25, lost_max_scale=2.5)
    assert lost_search_growth(0, config) == 1.0
    assert 1.0 < lost_search_growth(2, config) < 2.5
    # 3,181 frames used to overflow ``1.25 ** lost_frames``; any count must give the cap.
    for frames in (10, 3181, 10**6, 10**12):
        assert lost_search_growth(frames, config) == 2.5


def test_reacquiring_is_harder_than_keeping() -> None:
    config = PresenceConfig()
    middling = PresenceSignals(score=0.05, similarity=0.8, area=500, last_area=500)
    assert is_visible(False, middling, config)  # tracked objects keep going
    assert not is_visible(True, middling, config)  # lost ones need clear evidence
    clear = PresenceSignals(score=0.5, similarity=0.9, area=500, last_area=500)
    assert is_visible(True, clear, config)
    implausible = PresenceSignals(score=0.5, similarity=0.9, area=5000, last_area=500)
    assert not is_visible(True, implausible, config)
    assert not is_visible(False, PresenceSignals(score=1, similarity=1, area=1, last_area=500), config)


def _logit(p: float) -> float:
    return float(np.log(p / (1 - p)))


def test_merge_gives_contested_pixels_to_the_previous_owner() -> None:
    logits = np.full((2, 4, 4), -30.0, np.float32)
    logits[0, :, :3] = _logit(0.8)
    logits[1, :, 1:] = _logit(0.7)
    own = logits > 0
    prev = np.zeros((2, 4, 4), np.uint8)
    prev[1, :, 1:3] = 255  # object 2 held the middle columns
    labels = merge_objects(logits, own, prev, np.array([3, 7], np.uint8), overlap_prior_weight=1.0)
    assert (labels[:, 0] == 3).all()
    assert (labels[:, 1:3] == 7).all()  # probability 0.7 x 2 beats 0.8 on pixels object 7 held
    assert (labels[:, 3] == 7).all()
    no_prior = merge_objects(logits, own, np.zeros_like(prev), np.array([3, 7], np.uint8), 1.0)
    assert (no_prior[:, 1:3] == 3).all()
    # The weighting is on probabilities, not logits: 2 x 0.55 beats 0.8, 2 x logit(0.55) = 0.4 would not beat 1.39.
    close = logits.copy()
    close[1, :, 1:] = _logit(0.55)
    assert (merge_objects(close, close > 0, prev, np.array([3, 7], np.uint8), 1.0)[:, 1:3] == 7).all()


def test_learned_presence_has_patience_and_hysteresis() -> None:
    from vosctl.presence import update_presence

    config = PresenceConfig(lost_presence=0.3, found_presence=0.6, lost_patience=2)

    def signals(presence: float, area: float = 500) -> PresenceSignals:
        return PresenceSignals(score=0.0, similarity=0.0, area=area, last_area=500, presence=presence)

    first = update_presence(False, 0, signals(0.1), config)
    assert not first.visible and not first.lost and first.low_frames == 1  # one weak frame: held
    second = update_presence(False, first.low_frames, signals(0.1), config)
    assert not second.visible and second.lost  # two in a row: lost
    assert update_presence(False, 1, signals(0.5), config).low_frames == 0  # evidence resets patience
    assert not update_presence(True, 0, signals(0.5), config).visible  # 0.5 keeps but does not re-find
    assert update_presence(True, 0, signals(0.7), config).visible
    assert not update_presence(True, 0, signals(0.9, area=50), config).visible  # implausible size


def test_sweep_covers_the_whole_frame() -> None:
    from vosctl.presence import sweep_centre

    config = PresenceConfig(sweep_after=8)
    assert sweep_centre(3, config, 3840, 2160, 600) is None  # first frames: near the last position
    centres = {sweep_centre(f, config, 3840, 2160, 600) for f in range(9, 9 + 200)}
    covered = np.zeros((2160, 3840), bool)
    for cx, cy in centres:
        covered[int(max(0, cy - 300)) : int(cy + 300), int(max(0, cx - 300)) : int(cx + 300)] = True
    assert covered.all()
    assert len(centres) <= 9 * 5  # tiles of 600 px with a quarter overlap: a bounded cycle


def _embedding(value: float, objects: int = 1) -> TemplateEmbedding:
    return TemplateEmbedding(torch.full((objects, 4, 2, 2), value), torch.full((objects, 4), value))


def test_memory_combines_the_trusted_entry_with_the_bounded_bank() -> None:
    memory = AppearanceMemory.from_embedding(MemoryConfig(bank_size=2, trusted_weight=0.5), _embedding(1.0, objects=2))
    for value in (3.0, 5.0, 7.0):  # the oldest (3) falls out of a bank of two
        memory.add_recent(0, _embedding(value))
    assert len(memory.bank[0]) == 2 and not memory.bank[1]
    combined = memory.combined()
    assert torch.allclose(combined.kernel[0], torch.full((4, 2, 2), 0.5 * 1.0 + 0.5 * 6.0))
    assert torch.allclose(combined.prototype[0], torch.full((4,), 0.5 * 1.0 + 0.5 * 6.0))
    assert torch.equal(combined.kernel[1], torch.ones(4, 2, 2))  # an empty bank: the trusted entry as it is

    memory.set_trusted(0, _embedding(9.0))  # a correction: the new trusted appearance, the bank restarts
    assert not memory.bank[0]
    assert torch.equal(memory.combined().kernel[0], torch.full((4, 2, 2), 9.0))


def test_motion_prediction_leads_a_steady_mover_and_is_capped() -> None:
    config = MotionConfig(gain=1.0, smoothing=0.5, max_shift=0.25)
    velocity = (0.0, 0.0)
    for _ in range(12):  # 10 px right, 4 px up per frame
        velocity = update_velocity(velocity, (10.0, -4.0), config)
    assert np.allclose(velocity, (10.0, -4.0), atol=0.01)
    assert np.allclose(search_centre(100.0, 50.0, velocity, 200.0, config), (110.0, 46.0), atol=0.01)
    # One jump (a spilled mask moving the box centre) is averaged, not followed.
    jumped = update_velocity(velocity, (90.0, -4.0), config)
    assert np.allclose(jumped, (50.0, -4.0), atol=0.01)
    # The shift is capped at max_shift x the window's side, keeping its direction.
    x, y = search_centre(0.0, 0.0, (300.0, 400.0), 200.0, config)
    assert np.isclose(np.hypot(x, y), 50.0) and np.isclose(y / x, 400.0 / 300.0)
    # gain 0 (the default) is the last position exactly.
    assert search_centre(100.0, 50.0, velocity, 200.0, MotionConfig()) == (100.0, 50.0)
    for bad in ({"gain": -1.0}, {"smoothing": 0.0}, {"max_shift": 0.6}):
        with pytest.raises(InputError, match="motion."):
            MotionConfig(**bad)


def test_mask_region_is_the_centre_only_when_every_box_fits() -> None:
    canvas = (288, 288)  # a 72 x 72 grid of stride-4 cells
    centred = (108.0, 108.0, 72.0, 72.0)  # x, y, w, h: a quarter of the side, in the middle
    assert mask_region(canvas, [centred], 2 / 3, 0.25) == (12, 60, 12, 60)
    assert mask_region(canvas, [centred, (60.0, 100.0, 40.0, 40.0)], 2 / 3, 0.25) == (12, 60, 12, 60)
    # Grown by its margin, a box that reaches past the centre's 48..240 px needs the whole canvas.
    assert mask_region(canvas, [(55.0, 108.0, 40.0, 40.0)], 2 / 3, 0.25) is None  # 55 - 10 < 48
    assert mask_region(canvas, [(55.0, 108.0, 40.0, 40.0)], 2 / 3, 0.0) == (12, 60, 12, 60)
    assert mask_region(canvas, [(108.0, 108.0, 72.0, 140.0)], 2 / 3, 0.0) is None  # too tall
    assert mask_region(canvas, [centred, None], 2 / 3, 0.25) is None  # no previous mask: anywhere
    assert mask_region(canvas, [centred], 1.0, 0.25) is None
    assert mask_region(canvas, [], 2 / 3, 0.25) is None
    # Non-square canvases keep the fraction of each side, centred, with even sides.
    top, bottom, left, right = mask_region((160, 288), [(120.0, 60.0, 40.0, 40.0)], 2 / 3, 0.25)
    assert (bottom - top, right - left) == (26, 48) and top == 7 and left == 12


def test_the_smallest_central_region_that_holds_every_box_is_chosen() -> None:
    canvas = (288, 288)  # a 72 x 72 grid of stride-4 cells
    half, two_thirds = (18, 54, 18, 54), (12, 60, 12, 60)  # pixels 72..216 and 48..240
    compact = (108.0, 108.0, 72.0, 72.0)  # grown by 18 px: 90..198, inside the half
    wider = (80.0, 108.0, 120.0, 72.0)  # grown by 30 px: 50..230 across, inside 2/3 only
    assert smallest_mask_region(canvas, [compact], (0.5, 2 / 3), 0.25) == half
    assert smallest_mask_region(canvas, [compact], (2 / 3, 0.5), 0.25) == half  # in any order
    assert smallest_mask_region(canvas, [wider], (0.5, 2 / 3), 0.25) == two_thirds
    assert smallest_mask_region(canvas, [compact, wider], (0.5, 2 / 3), 0.25) == two_thirds  # every box must fit
    assert smallest_mask_region(canvas, [(20.0, 20.0, 40.0, 40.0)], (0.5, 2 / 3), 0.25) is None
    assert smallest_mask_region(canvas, [compact], (2 / 3,), 0.25) == two_thirds
    assert smallest_mask_region(canvas, [wider], (2 / 3, 2 / 3), 0.25) == two_thirds  # the small part off


def test_local_mask_box_in_a_crop() -> None:
    mask = np.zeros((100, 200), bool)
    mask[20:40, 50:90] = True
    local = LocalMask.from_frame(mask)
    matrix = np.array([[0.5, 0.0, 10.0], [0.0, 0.5, -5.0]])
    assert local.box_in(matrix) == (35.0, 5.0, 20.0, 10.0)
    assert LocalMask.empty().box_in(matrix) is None


def test_region_runs_are_redone_near_the_region_edge_or_below_the_presence_floor() -> None:
    logits = np.full((1, 160, 288), -30.0, np.float32)  # a 40 x 72 grid of stride-4 cells
    region = (0, 40, 12, 60)  # full height (the canvas's own top and bottom), central columns
    logits[0, 60:100, 100:180] = 2.2
    assert not reaches_region_edge(logits, region, 0.0)
    assert not region_run_doubtful(np.float32([0.95]), logits, region, 0.0, 0.9)
    assert region_run_doubtful(np.float32([0.85]), logits, region, 0.0, 0.9)
    logits[0, 0:10, 120:130] = 2.2  # at the canvas's top edge, also the region's: nothing was cut there
    assert not reaches_region_edge(logits, region, 0.0)
    logits[0, 60:70, 232:236] = 2.2  # within 3 cells (12 px) of the region's right edge (240 px)
    assert reaches_region_edge(logits, region, 0.0)
    assert region_run_doubtful(np.float32([0.99]), [logits[0]], region, 0.0, 0.9)


def test_memory_keeps_the_trusted_entry_s_colour_evidence() -> None:
    """Colour tables (networks with colour_input) are never averaged with recent frames: a recent
    mask may have spilled onto the background, the prompt's is exact."""

    def with_colour(value: float) -> TemplateEmbedding:
        return TemplateEmbedding(torch.full((1, 4, 2, 2), value), torch.full((1, 4), value), torch.full((1, 8), value))

    memory = AppearanceMemory.from_embedding(MemoryConfig(bank_size=2, trusted_weight=0.5), with_colour(1.0))
    memory.add_recent(0, with_colour(5.0))
    combined = memory.combined()
    assert torch.allclose(combined.kernel, torch.full((1, 4, 2, 2), 3.0))
    assert torch.equal(combined.colour, torch.ones(1, 8))
    assert memory.combined().colour is combined.colour  # cached until the memory changes
    assert AppearanceMemory.from_embedding(MemoryConfig(), _embedding(1.0)).combined().colour is None
