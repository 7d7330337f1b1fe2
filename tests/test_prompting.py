"""Prompt syntax and checks (vosctl.prompting): no model, no torch."""

from __future__ import annotations

import sys

import numpy as np
import pytest
from scenes import write_mask

from vosctl.errors import InputError
from vosctl.prompting import (
    Prompt,
    as_prompt,
    check_directions,
    load_prompts,
    parse_box_at,
    parse_mask_at,
    parse_prompt_options,
)


def test_parse_mask_at_and_box_at() -> None:
    spec = parse_mask_at("12:dir/with:colon.png")
    assert spec.frame == 12 and str(spec.path) == "dir/with:colon.png"
    box = parse_box_at("3: 10, 20, 30, 40")
    assert box.frame == 3 and box.box == (10, 20, 30, 40) and box.object_id is None
    assert parse_box_at("3:10,20,30,40:7").object_id == 7


@pytest.mark.parametrize(
    ("parse", "text", "expect"),
    [
        (parse_mask_at, "fix.png", "FRAME:PATH"),
        (parse_mask_at, "12:", "FRAME:PATH"),
        (parse_mask_at, "x:fix.png", "FRAME:PATH"),
        (parse_mask_at, "-2:fix.png", "negative"),
        (parse_box_at, "3:1,2,3", "FRAME:X,Y,W,H"),
        (parse_box_at, "3:1,2,3,4:two", "not a number"),
        (parse_box_at, "3:1,2,3,4:0", "1..254"),
        (parse_box_at, "3:1,2,3,4:5:6", "FRAME:X,Y,W,H"),
    ],
)
def test_malformed_values(parse, text, expect) -> None:
    with pytest.raises(InputError, match=expect):
        parse(text)


def test_load_prompts_ids_merge_and_conflicts(tmp_path) -> None:
    labels = np.zeros((24, 32), np.uint8)
    labels[2:8, 2:8] = 1
    labels[10:16, 10:16] = 4
    write_mask(tmp_path / "two.png", labels)  # palette PNG: ids 1 and 4
    one = (labels == 1).astype(np.uint8)
    write_mask(tmp_path / "one.png", one)
    specs = parse_prompt_options([f"5:{tmp_path / 'two.png'}"], ["5:20,2,6,6", "9:1,1,4,4", "9:3,3,4,4:1"])
    prompts = load_prompts(specs, 32, 24, start=0, first_labels=one)
    assert sorted(prompts) == [0, 5, 9]
    assert prompts[0].ids == [1]
    assert prompts[5].ids == [1, 4, 5]  # the id-less boxes get 5, 6 (above every id used)
    assert prompts[9].ids == [1, 6] and prompts[9].boxes[1] == (3, 3, 4, 4)
    with pytest.raises(InputError, match=r"two prompts for object 1 at frame 0 \(--mask m.png and --mask-at"):
        load_prompts(
            parse_prompt_options([f"0:{tmp_path / 'one.png'}"], []), 32, 24, 0, one, first_source="--mask m.png"
        )
    with pytest.raises(InputError, match="two prompts for object 4 at frame 3"):
        load_prompts(parse_prompt_options([f"3:{tmp_path / 'two.png'}"], ["3:1,1,4,4:4"]), 32, 24, 0, one)
    with pytest.raises(InputError, match=r"--mask-at 3:.*two.png: mask .* is 32x24 but the video frames are 64x48"):
        load_prompts(parse_prompt_options([f"3:{tmp_path / 'two.png'}"], []), 64, 48, 0, None, [(1, 1, 4, 4)])
    with pytest.raises(InputError, match="outside"):
        load_prompts(parse_prompt_options([], ["3:100,100,4,4"]), 32, 24, 0, one)


def test_directions_reach_every_prompt() -> None:
    check_directions([0, 5, 9], 0, "forward", total=10)
    check_directions([2, 5, 9], 5, "both", total=10)
    check_directions([1, 5], 5, "backward")
    for frames, start, direction, total, expect in [
        ([0, 10], 0, "forward", 10, "beyond the last frame \\(9\\)"),
        ([2, 5], 5, "forward", None, "before the start frame 5"),
        ([5, 7], 5, "backward", None, "after the start frame 5"),
        ([2, 7], 5, "both", None, "no prompt on the start frame 5"),
        ([5], 5, "up", None, "unknown direction"),
    ]:
        with pytest.raises(InputError, match=expect):
            check_directions(frames, start, direction, total)


def test_api_prompt_forms() -> None:
    assert as_prompt(np.ones((2, 2), np.uint8)).ids == [1]
    assert as_prompt([(1, 2, 3, 4), (5, 6, 7, 8)]).boxes == {1: (1, 2, 3, 4), 2: (5, 6, 7, 8)}
    assert as_prompt({7: (1, 2, 3, 4)}).ids == [7]
    prompt = Prompt(boxes={2: (0, 0, 1, 1)})
    assert as_prompt(prompt) is prompt
    with pytest.raises(InputError):
        as_prompt("12,3")


def test_no_torch_needed() -> None:
    import subprocess

    code = "import sys, vosctl.prompting, vosctl.jobs.frame_order; sys.exit('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0
