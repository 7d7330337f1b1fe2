"""The backward reader: the same frames as forward reading, last first, in bounded chunks."""

from __future__ import annotations

import numpy as np
import pytest
from synth import moving_square_frames, write_frame_folder, write_video

from vosctl.io import open_video
from vosctl.io.reverse import _rescan_backward, frame_count, index_video, read_backward

GOP = {"preset": "ultrafast", "crf": "12", "x264-params": "keyint=7:min-keyint=7:bframes=2:b-adapt=0:scenecut=0"}


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    path = tmp_path_factory.mktemp("rev") / "gop.mp4"
    write_video(path, moving_square_frames(40, 64, 48), options=GOP)
    with open_video(path) as source:
        forward = list(source)
    return path, forward


@pytest.mark.parametrize("chunk_frames", [1000, 3, 1])
def test_backward_matches_forward_reversed(video, chunk_frames) -> None:
    path, forward = video
    with open_video(path) as source:
        frames = list(read_backward(source, 39, chunk_bytes=chunk_frames * 64 * 48 * 3))
    assert [f.index for f in frames] == list(range(39, -1, -1))
    for frame in frames:
        assert np.array_equal(frame.rgb, forward[frame.index].rgb), frame.index
        assert frame.timestamp == forward[frame.index].timestamp


def test_backward_range_and_index(video) -> None:
    path, forward = video
    index = index_video(path)
    assert index is not None and len(index) == 40 and list(index.keyframes) == [0, 7, 14, 21, 28, 35]
    with open_video(path) as source:
        assert frame_count(source) == 40
        middle = list(read_backward(source, 25, stop=10, chunk_bytes=4 * 64 * 48 * 3))
        past_end = list(read_backward(source, 99, stop=37))
    assert [f.index for f in middle] == list(range(25, 9, -1))
    assert [f.index for f in past_end] == [39, 38, 37]


def test_rescan_fallback_gives_the_same_frames(video) -> None:
    path, forward = video
    with open_video(path) as source:
        frames = list(_rescan_backward(source, 20, 3, per_chunk=6))
    assert [f.index for f in frames] == list(range(20, 2, -1))
    assert all(np.array_equal(f.rgb, forward[f.index].rgb) for f in frames)


def test_folder_backward(tmp_path) -> None:
    frames = moving_square_frames(6, 32, 24)
    write_frame_folder(tmp_path / "clip", frames)
    with open_video(tmp_path / "clip") as source:
        back = list(read_backward(source, 4))
    assert [f.index for f in back] == [4, 3, 2, 1, 0]
    assert all(np.array_equal(f.rgb, frames[f.index]) for f in back)
