"""Paired comparison over input-noise replicates (vosctl.eval.replicates, benchmarks/compare_replicates.py)."""

from __future__ import annotations

import json

import pytest

from tests.inproc import load_script
from vosctl.errors import InputError
from vosctl.eval.replicates import ReplicateRule, compare_replicates


def report(replicate: int | None, **jf: float) -> dict:
    """A minimal `vosctl benchmark --json` report: per-sequence J&F (J and F set to the same value)."""
    rows = {name: {"J&F-Mean": value, "J-Mean": value, "F-Mean": value} for name, value in jf.items()}
    out: dict = {"sequences": rows}
    if replicate is not None:
        out["replicate"] = replicate
    return out


def test_a_chaotic_sequence_is_judged_by_its_mean_over_replicates() -> None:
    # "flip" loses 0.03 on replicate 0 only (one run's chance) and gains on the others; "steady" is even.
    base = [report(0, flip=0.90, steady=0.80), report(1, flip=0.70, steady=0.80), report(2, flip=0.75, steady=0.81)]
    cand = [report(2, flip=0.78, steady=0.81), report(0, flip=0.87, steady=0.80), report(1, flip=0.72, steady=0.80)]
    result = compare_replicates(base, cand)
    assert result.replicates == [0, 1, 2]
    assert result.per_sequence["flip"] == pytest.approx((-0.03 + 0.02 + 0.03) / 3)
    assert result.per_sequence["steady"] == pytest.approx(0.0)
    assert result.base_band == pytest.approx({"flip": 0.20, "steady": 0.01})
    assert result.per_replicate[0] == pytest.approx(-0.015)
    assert result.passed
    # Judged on replicate 0 alone, the same candidate fails the per-sequence guard.
    assert not compare_replicates(base[:1], cand[1:2]).passed


def test_the_rule_fails_a_steady_loss_on_one_sequence_or_on_the_mean() -> None:
    base = [report(k, a=0.9, b=0.8) for k in range(3)]
    one_sequence = [report(k, a=0.885, b=0.812) for k in range(3)]  # a: -0.015 everywhere, mean -0.0015
    assert not compare_replicates(base, one_sequence).passed
    assert compare_replicates(base, one_sequence, ReplicateRule(sequence_tolerance=0.02)).passed
    small_everywhere = [report(k, a=0.897, b=0.797) for k in range(3)]  # -0.003 on both
    result = compare_replicates(base, small_everywhere)
    assert result.mean_difference == pytest.approx(-0.003) and not result.passed
    assert compare_replicates(base, small_everywhere, ReplicateRule(figure="F-Mean", mean_tolerance=0.005)).passed


@pytest.mark.parametrize(
    "base, cand, message",
    [
        ([report(0, a=0.9)], [report(1, a=0.9)], "replicates [0] and candidate replicates [1] differ"),
        ([report(None, a=0.9)], [report(0, a=0.9)], "without a 'replicate'"),
        ([report(0, a=0.9), report(0, a=0.8)], [report(0, a=0.9)], "replicate 0 given twice"),
        ([report(0, a=0.9)], [report(0, b=0.9)], "scored other sequences"),
        ([], [], "differ"),
    ],
)
def test_unusable_input_is_one_clear_error(base, cand, message) -> None:
    with pytest.raises(InputError, match=message.replace("[", r"\[").replace("]", r"\]")):
        compare_replicates(base, cand)


def _script():
    return load_script("benchmarks/compare_replicates.py")


def test_script_exit_codes_and_table(tmp_path, capsys) -> None:
    def write(name: str, data: dict) -> str:
        path = tmp_path / name
        path.write_text(json.dumps(data))
        return str(path)

    base = [write(f"b{k}.json", report(k, a=0.9, b=0.8)) for k in range(2)]
    good = [write(f"g{k}.json", report(k, a=0.91, b=0.8)) for k in range(2)]
    bad = [write(f"x{k}.json", report(k, a=0.85, b=0.8)) for k in range(2)]
    main = _script().main
    assert main(["--base", *base, "--candidate", *good]) == 0
    out = capsys.readouterr().out
    assert "a" in out and "+0.0100" in out and "PASS" in out
    assert main(["--base", *base, "--candidate", *bad]) == 1 and "FAIL" in capsys.readouterr().out
    # A negative tolerance asks for a gain: +0.005 is not enough for a required +0.006.
    assert main(["--base", *base, "--candidate", *good, "--mean-tolerance", "-0.006"]) == 1
    assert "(>= +0.0060)" in capsys.readouterr().out
    assert main(["--base", *base, "--candidate", good[0]]) == 2
    assert "differ" in capsys.readouterr().err
    assert main(["--base", str(tmp_path / "none.json"), "--candidate", good[0]]) == 2
    assert "cannot read benchmark JSON" in capsys.readouterr().err
