"""Two benchmark runs compared frame by frame (vosctl.eval.frames, benchmarks/compare_frames.py)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tests.inproc import load_script
from vosctl.errors import InputError
from vosctl.eval.frames import compare_frames, compare_sequence_frames


def report(**curves: list[float | None]) -> dict:
    """A minimal `vosctl benchmark --json` report: the per-frame J curves (scored frames from frame 1)."""
    return {"per_frame": {name: {"first_frame": 1, "J": j, "F": j} for name, j in curves.items()}}


def test_a_switch_is_found_where_the_candidate_stays_behind_and_a_dip_is_not() -> None:
    base = np.full(12, 0.9)
    # Frame 3 dips for one frame (noise, not a switch); from frame 7 on the candidate follows something else.
    candidate = np.array([0.9, 0.9, 0.3, 0.9, 0.9, 0.9, 0.45, 0.2, 0.0, 0.0, 0.0, 0.0])
    row = compare_sequence_frames("bird", 1, base, candidate, drop=0.2, run=5, near=0.1)
    assert row.falls_behind_at == 7
    assert row.lost == [3, 7, 8, 9, 10, 11, 12] and row.gained == []
    assert (row.base_above, row.candidate_above, row.frames) == (12, 5, 12)
    assert row.candidate_near == 1 and row.base_near == 0  # only 0.45 is just below 0.5
    assert row.recall_difference == pytest.approx(-7 / 12)
    # A run shorter than asked is no switch; the same curve with run=6 still finds it.
    assert compare_sequence_frames("bird", 1, base, candidate, 0.2, 7, 0.1).falls_behind_at is None
    assert compare_sequence_frames("bird", 1, base, candidate, 0.2, 6, 0.1).falls_behind_at == 7


def test_crossings_both_ways_and_null_frames() -> None:
    # J exactly 0.5 is not above (the recall counts J > 0.5); null (NaN) is never above.
    rows = compare_frames(report(a=[0.5, 0.7, 0.49, None]), report(a=[0.51, 0.5, 0.6, 0.9]))
    (row,) = rows
    assert row.gained == [1, 3, 4] and row.lost == [2]  # frame 4: null for the base
    assert (row.base_above, row.candidate_above) == (1, 3)
    assert row.base_near == 2 and row.candidate_near == 1  # base 0.5, 0.49; candidate 0.5
    assert row.falls_behind_at is None


def test_unusable_input_is_one_clear_error() -> None:
    with pytest.raises(InputError, match="base JSON has no per-frame curves"):
        compare_frames({"sequences": {}}, report(a=[0.9]))
    with pytest.raises(InputError, match="share no sequence"):
        compare_frames(report(a=[0.9]), report(b=[0.9]))
    with pytest.raises(InputError, match="different frames"):
        compare_frames(report(a=[0.9, 0.9]), report(a=[0.9]))
    with pytest.raises(InputError, match="malformed"):
        compare_frames(report(a=[0.9]), {"per_frame": {"a": {"J": ["x"]}}})


def test_script_table_show_and_exit_codes(tmp_path, capsys) -> None:
    def write(name: str, data: dict) -> str:
        path = tmp_path / name
        path.write_text(json.dumps(data))
        return str(path)

    base = write("b.json", report(bird=[0.9] * 8, car=[0.8] * 3))
    cand = write("c.json", report(bird=[0.9, 0.9, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1], car=[0.8] * 3))
    main = load_script("benchmarks/compare_frames.py").main
    assert main(["--base", base, "--candidate", cand, "--show", "bird"]) == 0
    out = capsys.readouterr().out
    bird = next(line for line in out.splitlines() if line.startswith("bird "))
    assert "8->2" in bird and " 3 " in bird and "3,4,5,6,7,8" in bird  # falls behind at frame 3
    assert "   3   0.900   0.100  <" in out  # --show: frame 3 of bird, marked as behind
    car = next(line for line in out.splitlines() if line.startswith("car "))
    assert "3->3" in car and "- / -" in car
    assert main(["--base", base, "--candidate", cand, "--show", "ghost"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "ghost" in err[0]
    assert main(["--base", str(tmp_path / "none.json"), "--candidate", cand]) == 2
    assert "cannot read benchmark JSON" in capsys.readouterr().err
