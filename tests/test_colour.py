"""The colour cue (vosctl.colour) alone, and through the tracker: it refines what is written, never the tracking."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from scenes import crossing_shapes, iou
from synth import square_mask

from vosctl.colour import ColourConfig, colour_bins, colour_table, refine_logits
from vosctl.errors import InputError

RED, BLUE, GREEN = (200, 30, 30), (30, 30, 200), (30, 200, 30)


def _bin(colour: tuple[int, int, int], bits: int = 4) -> int:
    return int(colour_bins(np.asarray(colour, np.uint8).reshape(1, 1, 3), bits)[0, 0])


def _red_square_on_blue() -> tuple[np.ndarray, np.ndarray]:
    square = square_mask(60, 80, 20, 30, 20)
    rgb = np.empty((60, 80, 3), np.uint8)
    rgb[:] = BLUE
    rgb[square] = RED
    return rgb, square.astype(np.uint8)


def test_bins_split_each_channel_into_equal_ranges() -> None:
    pixels = np.array([[[0, 0, 0], [255, 255, 255], [16, 0, 0], [0, 16, 0], [0, 0, 16], [15, 15, 15]]], np.uint8)
    assert colour_bins(pixels, 4).tolist() == [[0, 4095, 256, 16, 1, 0]]
    assert colour_bins(pixels, 1).tolist() == [[0, 7, 0, 0, 0, 0]]


def test_table_favours_the_objects_colours_and_barely_moves_unseen_ones() -> None:
    rgb, labels = _red_square_on_blue()
    config = ColourConfig(weight=1.0, clip=3.0)
    table = colour_table(rgb, labels, 1, (30, 20, 20, 20), config)
    assert table.shape == (4096,) and table.dtype == np.float32
    assert table[_bin(RED)] == pytest.approx(3.0)  # clipped
    assert table[_bin(BLUE)] == pytest.approx(-3.0)
    # Seen on neither side: only the pseudo-counts speak (400 object, 1,200 surround pixels).
    assert table[_bin(GREEN)] == pytest.approx(np.log((1200 + 4096) / (400 + 4096)), abs=1e-5)
    half = colour_table(rgb, labels, 1, (30, 20, 20, 20), dataclasses.replace(config, weight=0.5))
    np.testing.assert_allclose(half, table / 2, atol=1e-6)


def test_the_surround_is_the_box_grown_about_its_centre() -> None:
    rgb, labels = _red_square_on_blue()
    rgb[0:5, 0:5] = GREEN  # far corner: outside the box grown 2x, inside it grown 4x
    tight = colour_table(rgb, labels, 1, (30, 20, 20, 20), ColourConfig(surround=2.0))
    wide = colour_table(rgb, labels, 1, (30, 20, 20, 20), ColourConfig(surround=4.0))
    assert tight[_bin(GREEN)] > 0.0  # never seen: the pseudo-counts' mild pull only
    assert wide[_bin(GREEN)] < -1.0


def test_refine_adds_evidence_only_where_it_can_change_the_mask() -> None:
    rgb, _ = _red_square_on_blue()
    config = ColourConfig(weight=1.0, clip=3.0)
    table = np.zeros(4096, np.float32)
    table[_bin(RED)], table[_bin(BLUE)] = 3.0, -3.0
    logits = np.full((60, 80), -30.0, np.float32)
    logits[18:42, 28:52] = -1.0  # doubtful around the square
    logits[25:35, 35:45] = 2.0
    out, band = np.empty_like(logits), np.empty(logits.shape, bool)
    refine_logits(out, band, logits, rgb, table, 0.0, config)
    assert (out[20:40, 30:50] > 0).all()  # red pixels pulled in
    assert (out[18:20, 28:52] < -1.0).all()  # blue pixels next to it pushed out
    np.testing.assert_array_equal(out[:10], logits[:10])  # far below the threshold: untouched
    nothing = np.full((60, 80), -30.0, np.float32)
    refine_logits(out, band, nothing, rgb, table, 0.0, config)
    np.testing.assert_array_equal(out, nothing)


def test_config_rejects_nonsense() -> None:
    with pytest.raises(InputError):
        ColourConfig(weight=-1.0)
    with pytest.raises(InputError):
        ColourConfig(bits=9)
    with pytest.raises(InputError):
        ColourConfig(surround=0.5)


@pytest.fixture(scope="module")
def runs():
    """The same two-object scene tracked without colour and with an overwhelming colour weight."""
    from vosctl import Segmenter, SegmenterConfig

    frames, truth = crossing_shapes(frames=24)
    out = {}
    for weight in (0.0, 10.0):
        config = SegmenterConfig(colour=ColourConfig(weight=weight))
        segmenter = Segmenter.from_pretrained("default", device="cpu", config=config)
        state, first = segmenter.init_state(frames[0], truth[0])
        states, results = [], [first]
        for rgb in frames[1:]:
            results.append(segmenter.step(state, rgb))
            states.append(
                [(o.cx, o.cy, o.w, o.h, o.lost) for o in state.objects]
                + [m.mask.tobytes() for m in state.prev_masks]
                + [float(state.memory.combined().prototype.sum())]
            )
        out[weight] = (states, results)
    return frames, truth, out


def test_colour_never_changes_what_the_tracker_carries_on(runs) -> None:
    _, _, out = runs
    (plain_states, plain), (colour_states, coloured) = out[0.0], out[10.0]
    # The written masks differ (the cue is on and strong) ...
    assert any((a.labels != b.labels).any() for a, b in zip(plain[1:], coloured[1:]))
    # ... but positions, sizes, priors and memory are the network's, frame by frame.
    assert plain_states == colour_states


def test_reported_boxes_and_areas_are_those_of_the_written_masks(runs) -> None:
    _, truth, out = runs
    _, coloured = out[10.0]
    for result in coloured[1:]:
        for object_id, obj in result.objects.items():
            mask = result.labels == object_id
            assert obj.area == int(mask.sum())
            if obj.box is not None:
                ys, xs = np.nonzero(mask)
                assert obj.box[:2] == (int(xs.min()), int(ys.min()))
    # The scene's shapes are textured, not flat colours: the cue must still keep them.
    for object_id in (1, 2):
        scores = [iou(r.labels == object_id, t == object_id) for r, t in zip(coloured[1:], truth[1:])]
        assert np.mean(scores) >= 0.6, (object_id, scores)
