"""Training on multi-object video (DAVIS-2017 layout): one target per object, the others in view."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.synth import texture, write_davis2016, write_davis2017
from vosctl.errors import InputError

W, H, FRAMES = 160, 120, 12
SIDES = {1: 20, 2: 24}  # two red squares side by side; their areas tell them apart
RED = (210, 30, 30)


def flock(void: bool = False) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Two red squares (ids 1, 2) moving right together over a grey texture; with ``void``, a
    255 strip along the top of every annotation (DAVIS-2017's void label)."""
    background = texture(3, H, W).mean(axis=2, keepdims=True).repeat(3, axis=2).astype(np.uint8)
    frames, labels = [], []
    for t in range(FRAMES):
        frame, label = background.copy(), np.zeros((H, W), np.uint8)
        left = 30 + 4 * t
        for object_id, side in SIDES.items():
            top = 50
            frame[top : top + side, left : left + side] = RED
            label[top : top + side, left : left + side] = object_id
            left += side + 3  # a 3-pixel gap: touching look-alikes
        if void:
            label[0:4, :] = 255
        frames.append(frame)
        labels.append(label)
    return frames, labels


def _sampler(root: Path, year: str, instances: bool = True, **pairs):
    from vosctl.train.data import DavisFrames, PairConfig, PairSampler, default_sequences

    davis = DavisFrames(root, default_sequences(root, year), year, instances)
    cfg = PairConfig(template_size=64, search_size=128, negative_prob=0.0, **pairs)
    return PairSampler(cfg, davis, None, (1.0, 0.0, 0.0)), davis


def test_each_pair_targets_one_object_of_a_multi_object_sequence(tmp_path: Path, monkeypatch) -> None:
    """The template, search and prior masks are all one object's (never both), and both objects are targets."""
    frames, labels = flock()
    root = write_davis2017(tmp_path / "davis", {"flock": (frames, labels)})
    sampler, davis = _sampler(root, "2017")
    assert davis.objects == [[1, 2]]
    seen = []
    monkeypatch.setattr(sampler, "_make_sample", lambda rng, t_img, t_mask, s_img, s_mask, prior, *rest: seen.append(
        (t_mask, s_mask, prior)))  # fmt: skip
    rng = np.random.default_rng(0)
    for _ in range(60):
        sampler._video_sample(rng)
    targets = set()
    for t_mask, s_mask, prior in seen:
        areas = {int(m.sum()) for m in (t_mask, s_mask, prior)}
        assert len(areas) == 1, areas  # the same object in all three
        area = areas.pop()
        target = next(i for i, side in SIDES.items() if side * side == area)
        targets.add(target)
        assert set(np.unique(t_mask)) <= {0, 1}
    assert targets == {1, 2}


def test_the_other_object_stays_in_view_and_out_of_the_mask(tmp_path: Path) -> None:
    frames, labels = flock()
    root = write_davis2017(tmp_path / "davis", {"flock": (frames, labels)})
    sampler, _ = _sampler(root, "2017")
    rng = np.random.default_rng(1)
    with_neighbour = 0
    samples = [sampler.sample(rng) for _ in range(40)]
    for sample in samples:
        assert sample.present
        search = sample.search.astype(int)
        red = (search[..., 0] - np.maximum(search[..., 1], search[..., 2])) > 80
        outside = red & (sample.search_mask < 0.01)
        with_neighbour += outside.sum() > 50
    # The windows are about twice the object: the neighbour 3 px away is in nearly every one.
    assert with_neighbour >= 0.8 * len(samples)


def test_a_single_object_2017_sequence_gives_exactly_the_2016_pairs(tmp_path: Path) -> None:
    """One object: the same random draws as a DAVIS-2016 sequence (old configs are unchanged)."""
    frames, labels = flock()
    one = [np.where(label == 1, 1, 0).astype(np.uint8) for label in labels]
    sampler16, _ = _sampler(write_davis2016(tmp_path / "d16", {"solo": (frames, one)}), "2016")
    sampler17, _ = _sampler(write_davis2017(tmp_path / "d17", {"solo": (frames, one)}), "2017")
    # The same object under id 3 (an annotator's palette need not start at 1).
    three = [mask * 3 for mask in one]
    sampler17b, davis17b = _sampler(write_davis2017(tmp_path / "d17b", {"solo": (frames, three)}), "2017")
    assert davis17b.objects == [[1]]
    a = sampler16.batch(np.random.default_rng(5), 6)
    for other in (sampler17, sampler17b):
        b = other.batch(np.random.default_rng(5), 6)
        for key in a:
            assert np.array_equal(a[key], b[key]), key


def test_void_is_background_and_the_control_merges_the_objects(tmp_path: Path) -> None:
    frames, labels = flock(void=True)
    root = write_davis2017(tmp_path / "davis", {"flock": (frames, labels)})
    _, instances = _sampler(root, "2017")
    _, merged = _sampler(root, "2017", instances=False)
    for label, by_id, union in zip(labels, instances.masks[0], merged.masks[0], strict=True):
        expected = np.where(label == 255, 0, label)
        assert np.array_equal(by_id, expected)
        assert np.array_equal(union, (expected > 0).astype(np.uint8))
    assert instances.objects == [[1, 2]] and merged.objects == [[1]]
    assert list(instances.present[0][2]) == list(range(FRAMES))


def test_unknown_davis_year_is_refused(tmp_path: Path) -> None:
    import json

    from vosctl.train.data import DavisFrames
    from vosctl.train.loop import TrainConfig

    config = tmp_path / "c.json"
    config.write_text(json.dumps({"davis_year": "2019"}))
    with pytest.raises(InputError, match="davis_year must be 2016 or 2017"):
        TrainConfig.from_json(config)
    with pytest.raises(InputError, match="unknown DAVIS year '2019'"):
        DavisFrames(tmp_path, [], "2019")


def test_heldout_j_scores_each_object_on_its_own_id(tmp_path: Path, monkeypatch) -> None:
    """Object 1 found in every frame, object 2 never: 0.5 for the sequence (the DAVIS-2017 toolkit's
    per-object mean), not the J of the two objects' union."""
    from vosctl import tracker
    from vosctl.results import FrameResult
    from vosctl.train.loop import heldout_j

    frames, labels = flock()
    root = write_davis2017(tmp_path / "davis", {"flock": (frames, labels)})
    _, davis = _sampler(root, "2017")

    class OnlyObjectOne:
        def __init__(self, **_: object) -> None:
            pass

        def track(self, frames, labels):
            assert set(np.unique(labels)) == {0, 1, 2}  # both objects prompted
            for index, truth in enumerate(davis.masks[0][: len(frames)]):
                yield FrameResult(index=index, labels=np.where(truth == 1, 1, 0).astype(np.uint8), objects={})

    monkeypatch.setattr(tracker, "Segmenter", OnlyObjectOne)
    assert heldout_j(model=None, davis=davis, max_frames=None, device="cpu") == {"flock": 0.5}
