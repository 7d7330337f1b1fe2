"""First-frame prompts: the mask formats people have, boxes, and the errors for bad ones."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from synth import write_palette_png

from vosctl.errors import InputError
from vosctl.io import DAVIS_PALETTE, Box, boxes_prompt, parse_box, read_mask_prompt

W, H = 80, 48


def _shape() -> np.ndarray:
    """A boolean blob: a rectangle plus a disc."""
    yy, xx = np.mgrid[:H, :W]
    return ((xx > 10) & (xx < 30) & (yy > 5) & (yy < 20)) | ((xx - 55) ** 2 + (yy - 30) ** 2 < 100)


def test_palette_values_match_davis() -> None:
    assert DAVIS_PALETTE.shape == (256, 3) and DAVIS_PALETTE.dtype == np.uint8
    assert DAVIS_PALETTE[:5].tolist() == [[0, 0, 0], [128, 0, 0], [0, 128, 0], [128, 128, 0], [0, 0, 128]]
    assert DAVIS_PALETTE[255].tolist() == [224, 224, 192]


@pytest.mark.parametrize("on", [255, 1])
def test_binary_grayscale(tmp_path: Path, on: int) -> None:
    Image.fromarray(_shape().astype(np.uint8) * on).save(tmp_path / "m.png")
    labels = read_mask_prompt(tmp_path / "m.png", W, H)
    assert labels.dtype == np.uint8 and labels.shape == (H, W) and labels.flags["C_CONTIGUOUS"]
    assert np.array_equal(labels, _shape().astype(np.uint8))


def test_palette_ids_kept_and_void_dropped(tmp_path: Path) -> None:
    labels = np.zeros((H, W), np.uint8)
    labels[5:20, 5:30] = 3
    labels[25:40, 40:70] = 7
    labels[0:3, :] = 255  # DAVIS/VOC "void"
    write_palette_png(tmp_path / "first.png", labels)
    got = read_mask_prompt(tmp_path / "first.png", W, H)
    expected = labels.copy()
    expected[expected == 255] = 0
    assert np.array_equal(got, expected)
    assert set(np.unique(got)) == {0, 3, 7}


def test_palette_binary_0_255_is_one_object(tmp_path: Path) -> None:
    write_palette_png(tmp_path / "m.png", _shape().astype(np.uint8) * 255)
    assert np.array_equal(read_mask_prompt(tmp_path / "m.png", W, H), _shape().astype(np.uint8))


def test_rgba_alpha_is_the_mask(tmp_path: Path) -> None:
    rgba = np.random.default_rng(0).integers(0, 256, (H, W, 4), dtype=np.uint8)
    rgba[..., 3] = np.where(_shape(), 200, 30)  # soft alpha: >= 128 is the object
    Image.fromarray(rgba, "RGBA").save(tmp_path / "cutout.png")
    assert np.array_equal(read_mask_prompt(tmp_path / "cutout.png", W, H), _shape().astype(np.uint8))


def test_grayscale_label_map_keeps_ids(tmp_path: Path) -> None:
    labels = np.zeros((H, W), np.uint8)
    labels[5:20, 5:30] = 1
    labels[25:40, 40:70] = 2
    Image.fromarray(labels).save(tmp_path / "ids.png")
    assert np.array_equal(read_mask_prompt(tmp_path / "ids.png", W, H), labels)


def test_rgb_colour_masks(tmp_path: Path) -> None:
    rgb = np.zeros((H, W, 3), np.uint8)
    rgb[5:20, 5:30] = DAVIS_PALETTE[2]
    rgb[25:40, 40:70] = DAVIS_PALETTE[1]
    Image.fromarray(rgb).save(tmp_path / "davis.png")
    got = read_mask_prompt(tmp_path / "davis.png", W, H)
    assert got[10, 10] == 2 and got[30, 50] == 1 and got[0, 0] == 0  # DAVIS colours -> their ids

    rgb[5:20, 5:30] = (255, 200, 0)  # not DAVIS colours: ids by first appearance in raster order
    rgb[25:40, 40:70] = (10, 200, 255)
    Image.fromarray(rgb).save(tmp_path / "colours.png")
    got = read_mask_prompt(tmp_path / "colours.png", W, H)
    assert got[10, 10] == 1 and got[30, 50] == 2 and set(np.unique(got)) == {0, 1, 2}

    white = np.zeros((H, W, 3), np.uint8)
    white[_shape()] = 255
    Image.fromarray(white).save(tmp_path / "white.jpg", quality=90)  # JPEG: many colours at the edges
    got = read_mask_prompt(tmp_path / "white.jpg", W, H)
    assert set(np.unique(got)) == {0, 1}
    assert (got == _shape()).mean() > 0.97


def test_mask_errors(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="missing.png does not exist"):
        read_mask_prompt(tmp_path / "missing.png", W, H)

    (tmp_path / "text.png").write_text("hello")
    with pytest.raises(InputError, match="cannot read mask .*text.png"):
        read_mask_prompt(tmp_path / "text.png", W, H)

    Image.fromarray(np.full((36, 64), 255, np.uint8)).save(tmp_path / "first.png")
    with pytest.raises(InputError) as info:
        read_mask_prompt(tmp_path / "first.png", W, H)
    assert "is 64x36 but the video frames are 80x48" in str(info.value)

    Image.fromarray(np.zeros((H, W), np.uint8)).save(tmp_path / "empty.png")
    with pytest.raises(InputError, match="empty.png has no object"):
        read_mask_prompt(tmp_path / "empty.png", W, H)


def test_parse_box() -> None:
    assert parse_box("10,20,30,40") == Box(10, 20, 30, 40)
    assert parse_box(" 1.5, 2 ,3,4 ") == Box(1.5, 2, 3, 4)
    for bad in ("1,2,3", "a,b,c,d", "1,2,3,4,5", ""):
        with pytest.raises(InputError, match="is not X,Y,W,H"):
            parse_box(bad)


def test_boxes_prompt() -> None:
    boxes = boxes_prompt([parse_box("10,10,20,20"), "-10,30,30,30", (70, 40, 20, 20)], W, H)
    # ids are 1..N in the given order; partly-outside boxes are clipped to the frame
    assert boxes == [Box(10, 10, 20, 20), Box(0, 30, 20, 18), Box(70, 40, 10, 8)]
    with pytest.raises(InputError, match="has no area"):
        boxes_prompt([Box(1, 1, 0, 5)], W, H)
    with pytest.raises(InputError) as info:
        boxes_prompt([Box(10, 10, 5, 5), Box(100, 10, 20, 20)], W, H)
    assert "box 100,10,20,20" in str(info.value) and "80x48" in str(info.value)
    with pytest.raises(InputError, match="outside"):
        boxes_prompt(["-30,0,30,10"], W, H)  # touches the left edge only: no pixel inside
