"""Prompts at any frame with the shipped model: corrections, new objects, backward and both ways."""

from __future__ import annotations

import numpy as np
import pytest
from scenes import crossing_shapes, iou, moving_square

from vosctl.errors import InputError
from vosctl.io.video import Frame


@pytest.fixture(scope="module")
def segmenter():
    from vosctl import Segmenter

    return Segmenter.from_pretrained("default", device="cpu")


def wrong_mask(truth: np.ndarray) -> np.ndarray:
    """A mask of the same size on plain background, far from the object: a prompt that makes it fail."""
    ys, xs = np.nonzero(truth)
    h, w = ys.max() - ys.min() + 1, xs.max() - xs.min() + 1
    out = np.zeros_like(truth)
    y0 = truth.shape[0] - h - 4
    x0 = 4 if xs.min() > truth.shape[1] // 2 else truth.shape[1] - w - 4
    out[y0 : y0 + h, x0 : x0 + w] = 1
    assert not (out & (truth > 0)).any()
    return out


def test_correction_after_forced_failure_restores_the_object(segmenter) -> None:
    frames, truth = moving_square(frames=24)
    bad_at, fix_at = 4, 12
    prompts = {0: truth[0], bad_at: wrong_mask(truth[bad_at]), fix_at: truth[fix_at]}
    results = list(segmenter.track(frames, prompts=prompts))
    assert [r.index for r in results] == list(range(24))
    scores = [iou(r.labels == 1, t == 1) for r, t in zip(results, truth)]
    # The forced failure really fails: the object is followed on the wrong patch until the fix.
    assert max(scores[bad_at:fix_at]) < 0.2, scores
    assert min(scores[fix_at:]) >= 0.8, scores
    assert results[fix_at].prompted == (1,) and results[fix_at + 1].prompted == ()
    assert np.array_equal(results[fix_at].labels, truth[fix_at])  # the prompt frame is the prompt


def test_correction_through_the_step_api_on_the_current_frame(segmenter) -> None:
    frames, truth = moving_square(frames=16)
    state, _ = segmenter.init_state(frames[0], labels=wrong_mask(truth[0]))
    trusted_before = state.memory.trusted[0]
    for k in range(1, 8):
        result = segmenter.step(state, frames[k])
    assert iou(result.labels == 1, truth[7] == 1) < 0.2
    fixed = segmenter.add_prompt(state, 7, frames[7], labels=truth[7])  # correct the frame just returned
    assert fixed.index == 7 and np.array_equal(fixed.labels, truth[7])
    assert state.memory.trusted[0] is not trusted_before  # the corrected frame is the trusted template
    scores = [iou(segmenter.step(state, frames[k]).labels == 1, truth[k] == 1) for k in range(8, 16)]
    assert min(scores) >= 0.8, scores
    assert state.frame_index == 15


def test_object_added_mid_video_is_tracked_from_then_and_absent_before(segmenter) -> None:
    frames, truth = crossing_shapes(frames=30)
    k = 10
    first = np.where(truth[0] == 1, 1, 0).astype(np.uint8)
    added = np.where(truth[k] == 2, 2, 0).astype(np.uint8)
    results = list(segmenter.track(frames, prompts={0: first, k: added}))
    for r in results[:k]:
        assert 2 not in r.objects and not (r.labels == 2).any()
    assert results[k].prompted == (2,)
    assert all(2 in r.objects for r in results[k:])
    for object_id, since in ((2, k + 1), (1, 1)):
        scores = [iou(r.labels == object_id, t == object_id) for r, t in zip(results[since:], truth[since:])]
        assert np.mean(scores) >= 0.8, (object_id, scores)


def test_new_object_by_box_with_an_id(segmenter) -> None:
    frames, truth = crossing_shapes(frames=16)
    ys, xs = np.nonzero(truth[8] == 2)
    box = (xs.min() - 2, ys.min() - 2, xs.max() - xs.min() + 5, ys.max() - ys.min() + 5)
    first = np.where(truth[0] == 1, 1, 0).astype(np.uint8)
    results = list(segmenter.track(frames, prompts={0: first, 8: {5: box}}))
    assert 5 not in results[7].objects and results[8].prompted == (5,)
    assert iou(results[8].labels == 5, truth[8] == 2) >= 0.7
    assert np.mean([iou(r.labels == 5, t == 2) for r, t in zip(results[9:], truth[9:])]) >= 0.7


def test_both_directions_from_a_middle_frame_cover_every_frame(segmenter) -> None:
    frames, truth = moving_square(frames=24)
    middle = 12
    results = list(segmenter.track(frames, prompts={middle: truth[middle]}, direction="both"))
    # The backward pass first (middle-1 .. 0), then the forward pass (middle .. end).
    assert [r.index for r in results] == list(range(middle - 1, -1, -1)) + list(range(middle, 24))
    assert {r.direction for r in results[:middle]} == {"backward"}
    assert {r.direction for r in results[middle:]} == {"forward"}
    by_index = {r.index: r for r in results}
    scores = [iou(by_index[i].labels == 1, truth[i] == 1) for i in range(24)]
    assert min(scores) >= 0.8, scores


def test_backward_equals_forward_on_the_reversed_clip(segmenter) -> None:
    frames, truth = moving_square(frames=20)
    start = 15
    backward = list(segmenter.track(frames, prompts={start: truth[start]}, direction="backward"))
    assert [r.index for r in backward] == list(range(start, -1, -1))
    reversed_clip = frames[start::-1]
    forward = list(segmenter.track(reversed_clip, labels=truth[start]))
    assert len(forward) == len(backward)
    for b, f in zip(backward, forward):
        assert np.array_equal(b.labels, f.labels), b.index
    assert np.mean([iou(r.labels == 1, truth[r.index] == 1) for r in backward]) >= 0.8


def test_frames_carry_their_numbers_and_timestamps(segmenter) -> None:
    frames, truth = moving_square(frames=8)
    items = [Frame(i + 3, (i + 3) / 10, rgb) for i, rgb in enumerate(frames)]
    results = list(segmenter.track(items, labels=truth[0], prompts={6: truth[3]}))
    assert [r.index for r in results] == [3, 4, 5, 6, 7, 8, 9, 10]
    assert results[0].timestamp == pytest.approx(0.3) and results[0].frame is items[0]
    assert results[3].prompted == (1,)


def test_bad_prompts_are_input_errors(segmenter) -> None:
    frames, truth = moving_square(frames=6)
    with pytest.raises(InputError, match="beyond the last frame"):
        list(segmenter.track(frames, prompts={0: truth[0], 9: truth[5]}))
    with pytest.raises(InputError, match="negative"):
        list(segmenter.track(frames, prompts={0: truth[0], -1: truth[5]}))
    with pytest.raises(InputError, match="at frame 3 is 10x10"):
        list(segmenter.track(frames, prompts={0: truth[0], 3: np.ones((10, 10), np.uint8)}))
    with pytest.raises(InputError, match="before the start frame"):
        list(segmenter.track(frames, prompts={3: truth[3], 4: truth[4]}, start_frame=4))
    with pytest.raises(InputError, match="no prompt on the start frame 4"):
        list(segmenter.track(frames, prompts={0: truth[0]}, start_frame=4, direction="both"))
    with pytest.raises(InputError, match="never reached going backward"):
        list(segmenter.track(frames, prompts={2: truth[2], 4: truth[4]}, start_frame=2, direction="backward"))
    with pytest.raises(InputError, match="unknown direction"):
        list(segmenter.track(frames, labels=truth[0], direction="sideways"))
    with pytest.raises(InputError, match="contains no object"):
        list(segmenter.track(frames, prompts={0: truth[0], 2: np.zeros_like(truth[0])}))
    with pytest.raises(InputError, match="two prompts for object 1 at frame 0"):
        segmenter.init_state(frames[0], labels=truth[0], boxes={1: (40, 60, 60, 60)})
    with pytest.raises(InputError, match="frame 0 has a prompt twice"):
        list(segmenter.track(frames, labels=truth[0], prompts={0: truth[0]}))
    with pytest.raises(InputError, match="read backwards"):
        list(segmenter.track(iter(frames), labels=truth[0], start_frame=0, direction="backward"))


def test_prompt_takes_its_pixels_from_other_objects(segmenter) -> None:
    frames, truth = moving_square(frames=6)
    state, _ = segmenter.init_state(frames[0], labels=truth[0])
    ys, xs = np.nonzero(truth[0])
    half = np.zeros_like(truth[0])
    half[ys.min() : ys.max() + 1, xs.min() : (xs.min() + xs.max()) // 2] = 2  # a new object over its left half
    result = segmenter.add_prompt(state, 0, frames[0], labels=half)
    assert result.prompted == (2,) and sorted(result.objects) == [1, 2]
    assert np.array_equal(result.labels == 2, half == 2)
    assert np.array_equal(result.labels == 1, (truth[0] == 1) & (half == 0))
    assert result.objects[1].area == int(((truth[0] == 1) & (half == 0)).sum())
    nxt = segmenter.step(state, frames[1])  # both tracked on, with buffers sized for two objects
    assert sorted(nxt.objects) == [1, 2] and (nxt.labels == 1).any() and (nxt.labels == 2).any()
