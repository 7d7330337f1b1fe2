"""Where does a candidate part from the base? Two benchmark runs compared frame by frame.

    vosctl benchmark --davis ../davis2016 --sequences ... --json base.json
    vosctl benchmark --davis ../davis2016 --sequences ... --model cand.pt --json cand.json
    python benchmarks/compare_frames.py --base base.json --candidate cand.json [--show flamingo]

Per sequence: frames above J 0.5 for each run (what J-Recall counts), the frames that crossed 0.5
either way, the frames just below 0.5 (within ``--near``: a small change of the mask tips them),
and the frame from which the candidate stays ``--drop`` or more below the base for ``--run``
frames (a switch to another object, a lost target). ``--show SEQ`` adds that sequence's J per
frame for both. Reads the ``per_frame`` curves that ``vosctl benchmark --json`` writes.
Exit code 0, or 2 for unusable input.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from vosctl.errors import InputError
from vosctl.eval.frames import compare_curves, per_frame_j


def _load(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise InputError(f"cannot read benchmark JSON {path}: {error}") from None


def _frames(values: list[int], limit: int = 8) -> str:
    if not values:
        return "-"
    shown = ",".join(str(v) for v in values[:limit])
    return shown + (f",... ({len(values)})" if len(values) > limit else "")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--base", type=Path, required=True, help="the base's benchmark JSON")
    parser.add_argument("--candidate", type=Path, required=True, help="the candidate's, same sequences")
    parser.add_argument("--drop", type=float, default=0.2, help="J below the base that counts as falling behind")
    parser.add_argument("--run", type=int, default=5, help="consecutive frames that make falling behind")
    parser.add_argument("--near", type=float, default=0.1, help="width of the band just below J 0.5")
    parser.add_argument("--show", action="append", default=[], metavar="SEQ", help="print SEQ's J per frame")
    args = parser.parse_args(argv)
    try:
        base = per_frame_j(_load(args.base), "base")
        candidate = per_frame_j(_load(args.candidate), "candidate")
        rows = compare_curves(base, candidate, args.drop, args.run, args.near)
        missing = [name for name in args.show if name not in {row.name for row in rows}]
        if missing:
            raise InputError(f"--show: not a sequence both runs scored: {', '.join(missing)}")
    except InputError as error:
        print(f"compare_frames: error: {error}", file=sys.stderr)
        return 2
    print(f"J > 0.5 per sequence (base -> candidate); near: J in ({0.5 - args.near:.2f}, 0.5]")
    print(f"{'sequence':<22}{'frames':>7}{'above':>12}{'near':>10}  {'falls behind at':<16}gained / lost")
    for row in rows:
        behind = "-" if row.falls_behind_at is None else str(row.falls_behind_at)
        above = f"{row.base_above}->{row.candidate_above}"
        near = f"{row.base_near}->{row.candidate_near}"
        crossed = f"{_frames(row.gained)} / {_frames(row.lost)}"
        print(f"{row.name:<22}{row.frames:>7}{above:>12}{near:>10}  {behind:<16}{crossed}")
    for name in dict.fromkeys(args.show):
        (first_frame, base_j), (_, cand_j) = base[name], candidate[name]
        print(f"\n{name}: frame  J base  J candidate")
        for index, (b, c) in enumerate(zip(base_j.tolist(), cand_j.tolist())):
            mark = "  <" if c <= b - args.drop else ("  >" if c >= b + args.drop else "")
            print(f"{first_frame + index:>5}  {b:6.3f}  {c:6.3f}{mark}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
