"""Is a tracker setting better or worse than the default, beyond chance? Paired input-noise replicates.

    for k in 0 1 2 3; do
      vosctl benchmark --davis ../davis2016 --split train --sequences ... --replicate $k --json base-r$k.json
      vosctl benchmark --davis ../davis2016 --split train --sequences ... --replicate $k \\
          --set memory.bank_size=4 --json cand-r$k.json
    done
    python benchmarks/compare_replicates.py --base base-r*.json --candidate cand-r*.json

Pairs the runs by their replicate, prints per sequence the candidate's mean difference over the
replicates and the base's own spread across them (what noise of one grey level does to it), per
replicate the mean difference over the sequences, and the verdict of the rule
(``vosctl.eval.replicates.ReplicateRule``: by default the mean difference >= -0.002 and no sequence
below -0.010). Exit code 0 when the candidate passes, 1 when it does not, 2 for unusable input.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from vosctl.errors import InputError
from vosctl.eval.replicates import ReplicateRule, compare_replicates


def _load(paths: list[Path]) -> list[dict]:
    reports = []
    for path in paths:
        try:
            reports.append(json.loads(path.read_text()))
        except (OSError, ValueError) as error:
            raise InputError(f"cannot read benchmark JSON {path}: {error}") from None
    return reports


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--base", type=Path, nargs="+", required=True, help="base benchmark JSONs")
    parser.add_argument("--candidate", type=Path, nargs="+", required=True, help="the candidate's, same replicates")
    parser.add_argument("--figure", default="J&F-Mean", help="figure to compare: J&F-Mean, J-Mean, F-Mean, ...")
    parser.add_argument(
        "--mean-tolerance", type=float, default=0.002, help="largest allowed loss of the mean (<0: a required gain)"
    )
    parser.add_argument("--sequence-tolerance", type=float, default=0.010, help="largest allowed loss of a sequence")
    args = parser.parse_args(argv)
    rule = ReplicateRule(args.figure, args.mean_tolerance, args.sequence_tolerance)
    try:
        result = compare_replicates(_load(args.base), _load(args.candidate), rule)
    except InputError as error:
        print(f"compare_replicates: error: {error}", file=sys.stderr)
        return 2
    print(f"{rule.figure}, candidate - base, replicates {result.replicates}")
    print(f"{'sequence':<22}{'difference':>11}{'base spread':>13}")
    for name, diff in sorted(result.per_sequence.items(), key=lambda item: item[1]):
        print(f"{name:<22}{diff:>+11.4f}{result.base_band[name]:>13.4f}")
    print("per replicate:", "  ".join(f"{r}: {d:+.4f}" for r, d in result.per_replicate.items()))
    better = sum(d > 0.001 for d in result.per_sequence.values())
    worse = sum(d < -0.001 for d in result.per_sequence.values())
    verdict = "PASS" if result.passed else "FAIL"
    print(
        f"mean {result.mean_difference:+.4f} (>= {-rule.mean_tolerance:+.4f}), worst {result.worst_sequence} "
        f"{result.per_sequence[result.worst_sequence]:+.4f} (>= {-rule.sequence_tolerance:+.4f}); "
        f"better {better}, worse {worse} -> {verdict}"
    )
    return 0 if result.passed else 1


if __name__ == "__main__":
    sys.exit(main())
