#!/usr/bin/env python3
"""Average checkpoints fine-tuned from one parent into one (a uniform "model soup").

    python scripts/average_checkpoints.py OUT.pt MODEL [MODEL ...]

MODEL: a name in models/ or a checkpoint path. OUT.pt is written atomically and names its members.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from vosctl.model.checkpoint import average_checkpoints, save_checkpoint  # noqa: E402


def main() -> None:
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    out, members = Path(sys.argv[1]), sys.argv[2:]
    if out.exists():
        sys.exit(f"error: {out} already exists; choose another name")
    soup, metadata = average_checkpoints(members)
    save_checkpoint(soup, out, {"name": out.stem, **metadata})
    print(f"wrote {out}: {metadata['weights']}")


if __name__ == "__main__":
    main()
