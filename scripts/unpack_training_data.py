#!/usr/bin/env python3
"""Restore what ``pack_training_data.py`` packed into the layouts ``vosctl train`` reads.

    python scripts/unpack_training_data.py PACKED DEST

DEST/davis: DAVIS layout (JPEGImages/480p/<seq>/*.jpg at quality 95, Annotations as PNGs: 0/255, or
the object ids of a 2017 pack as grey values; ImageSets/<year>);
DEST/duts: DUTS layout (images/*.jpg, masks/*.png, list.txt). Needs only numpy and OpenCV (it
decodes the videos with cv2.VideoCapture), so it runs on a machine without the project's own
dependencies; sequences unpack in parallel.
"""

from __future__ import annotations

import lzma
import shutil
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import cv2
import numpy as np

MASK_FILTERS = [{"id": lzma.FILTER_LZMA2, "preset": 9, "dict_size": 1 << 20}]  # as pack_training_data.py


def read_masks(bits: Path, sizes: Path) -> list[tuple[str, np.ndarray]]:
    """Each (name, mask) of a packed mask stream, in order; ``sizes`` has "name width height bytes",
    then "ids" where the mask was packed as label values (DAVIS-2017 ids, kept as they are);
    otherwise it was packed as bits and comes back 0/255."""
    data, offset, masks = bits.read_bytes(), 0, []
    for line in sizes.read_text().splitlines():
        if not line:
            continue
        name, width, height, count, *kind = line.split()
        w, h, n = int(width), int(height), int(count)
        raw = np.frombuffer(
            lzma.decompress(data[offset : offset + n], format=lzma.FORMAT_RAW, filters=MASK_FILTERS), np.uint8
        )
        if kind == ["ids"]:
            masks.append((name, raw.reshape(h, w).copy()))
        else:
            masks.append((name, np.unpackbits(raw, count=w * h).reshape(h, w) * 255))
        offset += n
    return masks


def unpack_sequence(packed: Path, dest: Path, seq: str) -> int:
    masks = read_masks(packed / "masks" / f"{seq}.bin", packed / "masks" / f"{seq}.txt")
    out, annotations = dest / "JPEGImages" / "480p" / seq, dest / "Annotations" / "480p" / seq
    out.mkdir(parents=True, exist_ok=True)
    annotations.mkdir(parents=True, exist_ok=True)
    capture = cv2.VideoCapture(str(packed / "videos" / f"{seq}.mp4"))
    count = 0
    for name, mask in masks:
        ok, bgr = capture.read()
        if not ok:
            raise RuntimeError(f"{seq}: the video ends after {count} of {len(masks)} frames")
        cv2.imwrite(str(out / f"{name}.jpg"), bgr, [cv2.IMWRITE_JPEG_QUALITY, 95])
        cv2.imwrite(str(annotations / f"{name}.png"), mask)
        count += 1
    capture.release()
    return count


def unpack_static(packed: Path, dest: Path) -> int:
    (dest / "images").mkdir(parents=True, exist_ok=True)
    (dest / "masks").mkdir(parents=True, exist_ok=True)
    masks = read_masks(packed / "masks.bin", packed / "sizes.txt")
    capture = cv2.VideoCapture(str(packed / "images.mp4"))
    for name, mask in masks:
        ok, canvas = capture.read()
        if not ok:
            raise RuntimeError(f"the static-image video ends before {name}")
        image = canvas[: mask.shape[0], : mask.shape[1]]
        cv2.imwrite(str(dest / "images" / f"{name}.jpg"), image, [cv2.IMWRITE_JPEG_QUALITY, 95])
        cv2.imwrite(str(dest / "masks" / f"{name}.png"), mask)
    capture.release()
    (dest / "list.txt").write_text("\n".join(name for name, _ in masks) + "\n")
    return len(masks)


def main(packed: Path, dest: Path) -> None:
    davis, davis_dest = packed / "davis", dest / "davis"
    # The year the sequences were packed for (2016: binary masks; 2017: object ids).
    year = "2017" if (davis / "ImageSets" / "2017" / "train.txt").exists() else "2016"
    seqs = (davis / "ImageSets" / year / "train.txt").read_text().split()
    (davis_dest / "ImageSets" / year).mkdir(parents=True, exist_ok=True)
    shutil.copyfile(davis / "ImageSets" / year / "train.txt", davis_dest / "ImageSets" / year / "train.txt")
    with ProcessPoolExecutor() as pool:
        frames = sum(pool.map(unpack_sequence, [davis] * len(seqs), [davis_dest] * len(seqs), seqs))
    images = unpack_static(packed / "duts", dest / "duts")
    print(f"unpacked {len(seqs)} sequences ({frames} frames) and {images} static images into {dest}")


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    main(Path(sys.argv[1]), Path(sys.argv[2]))
