#!/usr/bin/env python3
"""Restore what ``pack_training_data.py`` packed into the layouts ``vosctl train`` reads.

    python scripts/unpack_training_data.py PACKED DEST

DEST/davis: DAVIS layout (JPEGImages/480p/<seq>/*.jpg at quality 95, Annotations, ImageSets);
DEST/duts: DUTS layout (images/*.jpg, masks/*.png, list.txt). Needs only numpy and OpenCV (it
decodes the videos with cv2.VideoCapture), so it runs on a machine without the project's own
dependencies; sequences unpack in parallel.
"""

from __future__ import annotations

import shutil
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import cv2


def unpack_sequence(packed: Path, dest: Path, seq: str) -> int:
    names = sorted(p.stem for p in (packed / "Annotations" / "480p" / seq).glob("*.png"))
    out = dest / "JPEGImages" / "480p" / seq
    out.mkdir(parents=True, exist_ok=True)
    capture = cv2.VideoCapture(str(packed / "videos" / f"{seq}.mp4"))
    count = 0
    for name in names:
        ok, bgr = capture.read()
        if not ok:
            raise RuntimeError(f"{seq}: the video ends after {count} of {len(names)} frames")
        cv2.imwrite(str(out / f"{name}.jpg"), bgr, [cv2.IMWRITE_JPEG_QUALITY, 95])
        count += 1
    capture.release()
    shutil.copytree(packed / "Annotations" / "480p" / seq, dest / "Annotations" / "480p" / seq, dirs_exist_ok=True)
    return count


def unpack_static(packed: Path, dest: Path) -> int:
    (dest / "images").mkdir(parents=True, exist_ok=True)
    shutil.copytree(packed / "masks", dest / "masks", dirs_exist_ok=True)
    entries = [line.split() for line in (packed / "sizes.txt").read_text().splitlines() if line]
    capture = cv2.VideoCapture(str(packed / "images.mp4"))
    for name, width, height in entries:
        ok, canvas = capture.read()
        if not ok:
            raise RuntimeError(f"the static-image video ends before {name}")
        image = canvas[: int(height), : int(width)]
        cv2.imwrite(str(dest / "images" / f"{name}.jpg"), image, [cv2.IMWRITE_JPEG_QUALITY, 95])
    capture.release()
    (dest / "list.txt").write_text("\n".join(name for name, _, _ in entries) + "\n")
    return len(entries)


def main(packed: Path, dest: Path) -> None:
    davis, davis_dest = packed / "davis", dest / "davis"
    seqs = (davis / "ImageSets" / "2016" / "train.txt").read_text().split()
    (davis_dest / "ImageSets" / "2016").mkdir(parents=True, exist_ok=True)
    shutil.copyfile(davis / "ImageSets" / "2016" / "train.txt", davis_dest / "ImageSets" / "2016" / "train.txt")
    with ProcessPoolExecutor() as pool:
        frames = sum(pool.map(unpack_sequence, [davis] * len(seqs), [davis_dest] * len(seqs), seqs))
    images = unpack_static(packed / "duts", dest / "duts")
    print(f"unpacked {len(seqs)} sequences ({frames} frames) and {images} static images into {dest}")


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    main(Path(sys.argv[1]), Path(sys.argv[2]))
