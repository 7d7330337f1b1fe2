"""Paired comparison of two tracker settings over input-noise replicates of one benchmark.

A single benchmark run can hang on a handful of frames: on DAVIS ``bmx-bumps`` a rider shrinks to a
few hundred pixels, and noise of one grey level (``vosctl benchmark --replicate K``) moves its J&F by
up to 0.2 while every other training sequence moves by less than 0.005. A per-sequence guard judged
on one run then rejects or accepts a change by chance. Here the base and the candidate are run on the
same replicates (the same perturbed frames), and each sequence is judged by its mean paired
difference over them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from vosctl.errors import InputError


@dataclass(frozen=True)
class ReplicateRule:
    """Pass iff the mean over sequences of the paired difference is >= -``mean_tolerance`` and no
    sequence's paired difference (mean over replicates) is below -``sequence_tolerance``."""

    figure: str = "J&F-Mean"
    mean_tolerance: float = 0.002
    sequence_tolerance: float = 0.010


@dataclass(frozen=True)
class ReplicateComparison:
    replicates: list[int]  # the replicate numbers both sides ran, ascending
    per_sequence: dict[str, float]  # candidate - base, mean over replicates
    per_replicate: dict[int, float]  # candidate - base, mean over sequences
    base_band: dict[str, float]  # the base's spread: max - min of the figure over the replicates
    mean_difference: float
    worst_sequence: str
    passed: bool


def _by_replicate(reports: list[dict[str, Any]], side: str) -> dict[int, dict[str, Any]]:
    runs: dict[int, dict[str, Any]] = {}
    for report in reports:
        replicate = report.get("replicate")
        if not isinstance(replicate, int):
            raise InputError(f"{side}: a benchmark JSON without a 'replicate' (made before --replicate existed?)")
        if replicate in runs:
            raise InputError(f"{side}: replicate {replicate} given twice")
        runs[replicate] = report
    return runs


def compare_replicates(
    base: list[dict[str, Any]], candidate: list[dict[str, Any]], rule: ReplicateRule | None = None
) -> ReplicateComparison:
    """Pair ``vosctl benchmark --json`` reports of the base and a candidate by replicate and judge by ``rule``."""
    rule = rule or ReplicateRule()
    base_runs, cand_runs = _by_replicate(base, "base"), _by_replicate(candidate, "candidate")
    if not base_runs or set(base_runs) != set(cand_runs):
        raise InputError(f"base replicates {sorted(base_runs)} and candidate replicates {sorted(cand_runs)} differ")
    replicates = sorted(base_runs)
    names = list(base_runs[replicates[0]]["sequences"])
    for side, runs in (("base", base_runs), ("candidate", cand_runs)):
        for replicate, report in runs.items():
            if set(report["sequences"]) != set(names):
                first = replicates[0]
                raise InputError(f"{side} replicate {replicate} scored other sequences than base replicate {first}")

    def figure(report: dict[str, Any], name: str) -> float:
        value = report["sequences"][name].get(rule.figure)
        if value is None:
            raise InputError(f"no {rule.figure} for {name} (figures: J&F-Mean, J-Mean, F-Mean, J-Recall, ...)")
        return float(value)

    base_values = {r: {n: figure(base_runs[r], n) for n in names} for r in replicates}
    diffs = {r: {n: figure(cand_runs[r], n) - base_values[r][n] for n in names} for r in replicates}
    per_sequence = {n: sum(diffs[r][n] for r in replicates) / len(replicates) for n in names}
    per_replicate = {r: sum(diffs[r].values()) / len(names) for r in replicates}
    band = {n: max(v[n] for v in base_values.values()) - min(v[n] for v in base_values.values()) for n in names}
    mean_difference = sum(per_sequence.values()) / len(names)
    worst = min(per_sequence, key=per_sequence.__getitem__)
    passed = mean_difference >= -rule.mean_tolerance and per_sequence[worst] >= -rule.sequence_tolerance
    return ReplicateComparison(replicates, per_sequence, per_replicate, band, mean_difference, worst, passed)
