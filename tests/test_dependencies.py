"""pyproject.toml's minimum versions are true: each API the code relies on exists in the minimum.

The table lists APIs newer than the oldest releases people may have, with the release that added
them (checked against the wheels of the releases just before: torch 2.4.1 has no
``serialization.safe_globals``, 2.5.0 has; opencv-python-headless 4.10 lacks ``IMREAD_COLOR_RGB``,
4.11 lacks ``IMWRITE_PNG_FILTER``, 4.12 has both; PyAV 14 has no ``VideoFrame.rotation`` or
``.duration``, 15 has). A new use of a newer API should add a row here and raise the minimum.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

NEEDS = [
    # (text in vosctl/, distribution, first release that has it)
    ("torch.serialization.safe_globals", "torch", (2, 5)),
    ("cv2.IMREAD_COLOR_RGB", "opencv-python-headless", (4, 11)),
    ("cv2.IMWRITE_PNG_FILTER", "opencv-python-headless", (4, 12)),
    ('getattr(first, "rotation"', "av", (15,)),  # VideoFrame.rotation
    ('getattr(frame, "duration"', "av", (15,)),  # VideoFrame.duration
]


def _minimums() -> dict[str, tuple[int, ...]]:
    """``name>=X.Y`` of ``[project] dependencies`` (a regex: tomllib needs Python 3.11)."""
    text = (ROOT / "pyproject.toml").read_text()
    block = re.search(r"^dependencies = \[(.*?)^\]", text, re.S | re.M)
    assert block, "no dependencies list in pyproject.toml"
    found = re.findall(r'"([A-Za-z0-9_.-]+)\s*>=\s*([0-9.]+)"', block[1])
    return {name.lower(): tuple(int(x) for x in version.split(".")) for name, version in found}


SOURCE = "\n".join(p.read_text() for p in (ROOT / "vosctl").rglob("*.py"))


@pytest.mark.parametrize(("api", "dist", "since"), NEEDS)
def test_minimum_version_has_the_api(api: str, dist: str, since: tuple[int, ...]) -> None:
    assert api in SOURCE, f"{api} is no longer used: drop its row (and maybe lower the minimum)"
    minimum = _minimums()[dist]
    assert minimum >= since, (
        f"the code uses {api} (new in {dist} {'.'.join(map(str, since))}), pyproject says >= {minimum}"
    )
