#!/usr/bin/env python3
"""Pack the training data compactly for a remote (GPU) machine that only receives a small upload.

    python scripts/pack_training_data.py DAVIS_ROOT DUTS_ROOT DEST --exclude bear,car-turn,... \\
        [--year 2016|2017] [--crf 22] [--static-bytes 24000000 | --upload-mib 62] [--static-crf 23]
        [--static-side 400]

DEST/davis/videos/<seq>.mp4           training sequences only (H.264, CRF --crf, from the JPEGs)
DEST/davis/masks/<seq>.bin, <seq>.txt the masks, lossless (see ``mask_bytes``), and each frame's
                                      name, width, height and byte count (and "ids" for label maps)
DEST/davis/ImageSets/<year>/train.txt the packed sequence names (--year: 2016 binary masks, 2017
                                      palette ids, one object each, kept as they are)
DEST/duts/images.mp4, masks.bin, sizes.txt   the first DUTS images up to --static-bytes (H.264 4:4:4,
                                      shrunk to --static-side), or up to what --upload-mib leaves
                                      after the tracked files and the sequences

Held-out sequences (--exclude) are never packed, so they cannot reach a training run there.
``scripts/unpack_training_data.py`` restores the layouts ``vosctl train`` reads (cv2 only).
"""

from __future__ import annotations

import argparse
import lzma
import subprocess
from pathlib import Path

import av
import cv2
import numpy as np

from vosctl.eval.davis import read_label_png
from vosctl.train.data import fit_within

REPOSITORY = Path(__file__).resolve().parents[1]
# Raw LZMA2 of the mask's bits, one stream per mask so each one's size is known while packing (the
# upload budget is exact). About a third of a 1-bit PNG. unpack_training_data.py holds the same filters.
MASK_FILTERS = [{"id": lzma.FILTER_LZMA2, "preset": 9, "dict_size": 1 << 20}]


def mask_bytes(mask: np.ndarray, ids: bool = False) -> bytes:
    """A mask's foreground bits (row-major, padded to a byte), compressed without a container; with
    ``ids``, its label values themselves (one byte a pixel: DAVIS-2017's object ids and void)."""
    raw = np.ascontiguousarray(mask, np.uint8).tobytes() if ids else np.packbits(mask.ravel() > 0).tobytes()
    return lzma.compress(raw, format=lzma.FORMAT_RAW, filters=MASK_FILTERS)


def pack_davis(root: Path, dest: Path, exclude: set[str], crf: int, year: str = "2016") -> list[str]:
    label_maps = year == "2017"  # palette ids (and void), kept as they are; 2016: the object's bits
    names = (root / "ImageSets" / year / "train.txt").read_text().split()
    kept = [name for name in names if name not in exclude]
    (dest / "videos").mkdir(parents=True, exist_ok=True)
    (dest / "masks").mkdir(parents=True, exist_ok=True)
    for seq in kept:
        annotations = sorted((root / "Annotations" / "480p" / seq).glob("*.png"))
        lines, streams = [], []
        with av.open(str(dest / "videos" / f"{seq}.mp4"), "w") as container:
            stream = container.add_stream("libx264", rate=24)
            stream.pix_fmt = "yuv420p"
            stream.options = {"crf": str(crf), "preset": "slow"}
            for index, ann in enumerate(annotations):
                bgr = cv2.imread(str(root / "JPEGImages" / "480p" / seq / f"{ann.stem}.jpg"), cv2.IMREAD_COLOR)
                if index == 0:  # 854x480 for DAVIS 480p; even sides for 4:2:0
                    stream.height, stream.width = bgr.shape[0], bgr.shape[1]
                frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(bgr[:, :, ::-1]), format="rgb24")
                for packet in stream.encode(frame):
                    container.mux(packet)
                if label_maps:  # read as the toolkit reads them
                    mask = read_label_png(ann, f"{seq}/{ann.name}")
                else:
                    mask = cv2.imread(str(ann), cv2.IMREAD_GRAYSCALE)
                streams.append(mask_bytes(mask, ids=label_maps))
                kind = " ids" if label_maps else ""
                lines.append(f"{ann.stem} {mask.shape[1]} {mask.shape[0]} {len(streams[-1])}{kind}")
            for packet in stream.encode():
                container.mux(packet)
        (dest / "masks" / f"{seq}.bin").write_bytes(b"".join(streams))
        (dest / "masks" / f"{seq}.txt").write_text("\n".join(lines) + "\n")
    (dest / "ImageSets" / year).mkdir(parents=True, exist_ok=True)
    (dest / "ImageSets" / year / "train.txt").write_text("\n".join(kept) + "\n")
    return kept


def pack_static(root: Path, dest: Path, budget: int, crf: int, side: int = 400) -> int:
    """The first images that fit in ``budget`` bytes, as one H.264 4:4:4 video (about half a JPEG's size).

    Each image is shrunk to ``side`` at most and placed at the top-left of a side x side frame;
    ``sizes.txt`` keeps each image's name, size and mask byte count to cut it out again.
    """
    dest.mkdir(parents=True, exist_ok=True)
    used, lines, masks = 0, [], []
    with av.open(str(dest / "images.mp4"), "w") as container:
        stream = container.add_stream("libx264", rate=24)
        stream.width = stream.height = side
        stream.pix_fmt = "yuv444p"
        stream.options = {"crf": str(crf), "preset": "slow"}
        for name in (root / "list.txt").read_text().split():
            bgr = cv2.imread(str(root / "images" / f"{name}.jpg"), cv2.IMREAD_COLOR)
            mask = cv2.imread(str(root / "masks" / f"{name}.png"), cv2.IMREAD_GRAYSCALE)
            if bgr is None or mask is None:
                continue
            bgr, mask = fit_within(bgr, mask, side)  # what StaticImages does when it loads them
            size = (bgr.shape[1], bgr.shape[0])
            canvas = np.zeros((side, side, 3), np.uint8)
            canvas[: size[1], : size[0]] = bgr
            for packet in stream.encode(av.VideoFrame.from_ndarray(canvas[:, :, ::-1].copy(), format="rgb24")):
                used += packet.size
                container.mux(packet)
            masks.append(mask_bytes(mask))
            used += len(masks[-1])
            lines.append(f"{name} {size[0]} {size[1]} {len(masks[-1])}")
            if used > budget:
                break
        for packet in stream.encode():
            container.mux(packet)
    (dest / "masks.bin").write_bytes(b"".join(masks))
    (dest / "sizes.txt").write_text("\n".join(lines) + "\n")
    return len(lines)


SLACK_BYTES = 1 << 20  # the file lists, folders and what the repository gains before the call


def tracked_bytes(repository: Path) -> int:
    """Bytes of the repository's tracked files: they travel to the device machine with the data."""
    try:
        listing = subprocess.run(["git", "ls-files", "-z"], cwd=repository, capture_output=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError) as error:
        raise SystemExit(f"error: cannot list the tracked files of {repository} with git: {error}") from error
    return sum((repository / name).stat().st_size for name in listing.decode().split("\0") if name)


def folder_bytes(folder: Path) -> int:
    return sum(path.stat().st_size for path in folder.rglob("*") if path.is_file())


def static_budget(upload_bytes: int, tracked: int, davis: int, slack: int = SLACK_BYTES) -> int:
    """What the DUTS images may take so that the tracked files and all the data fit in one upload."""
    budget = upload_bytes - tracked - davis - slack
    if budget <= 0:
        raise SystemExit(
            f"error: nothing left for the static images: the upload holds {upload_bytes / 2**20:.1f} MiB, "
            f"the tracked files take {tracked / 2**20:.1f} and the sequences {davis / 2**20:.1f} "
            "(raise --crf to pack the sequences smaller)"
        )
    return budget


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("davis_root", type=Path)
    parser.add_argument("duts_root", type=Path)
    parser.add_argument("dest", type=Path)
    parser.add_argument("--exclude", default="", help="comma-separated held-out sequences (never packed)")
    parser.add_argument("--year", choices=("2016", "2017"), default="2016", help="the DAVIS split and mask kind")
    parser.add_argument("--crf", type=int, default=22)
    parser.add_argument("--static-bytes", type=int, default=24_000_000)
    parser.add_argument("--static-crf", type=int, default=23)
    parser.add_argument("--static-side", type=int, default=400, help="longest side of a packed static image")
    parser.add_argument(
        "--upload-mib",
        type=float,
        help="fill what this upload (e.g. 64, the device tool's) leaves after this repository's tracked "
        "files and the sequences with static images, instead of --static-bytes",
    )
    args = parser.parse_args()
    exclude = set(filter(None, args.exclude.split(",")))
    kept = pack_davis(args.davis_root, args.dest / "davis", exclude, args.crf, args.year)
    davis = folder_bytes(args.dest / "davis")
    tracked = tracked_bytes(REPOSITORY)
    static = args.static_bytes
    if args.upload_mib is not None:
        static = static_budget(int(args.upload_mib * 2**20), tracked, davis)
    images = pack_static(args.duts_root, args.dest / "duts", static, args.static_crf, args.static_side)
    data = folder_bytes(args.dest)
    print(f"packed {len(kept)} sequences and {images} static images into {args.dest}")
    mib = [round(x / 2**20, 1) for x in (tracked, data, tracked + data)]
    print(f"to travel: {mib[0]} MiB of tracked files + {mib[1]} MiB of data = {mib[2]} MiB")


if __name__ == "__main__":
    main()
