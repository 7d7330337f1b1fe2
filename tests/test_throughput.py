"""Throughput (#9): thread policy, precision choice, torch crop path, window-local post-processing, 4K frames."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from scenes import crossing_shapes, iou, moving_square, write_mask
from synth import texture, write_video

from vosctl.errors import InputError
from vosctl.geometry import (
    PAD_COLOUR,
    LocalMask,
    canvas_window,
    crop_image,
    crop_matrix,
    crop_torch,
    paste_crop,
    shift_matrix,
)
from vosctl.merge import merge_objects, merge_windows
from vosctl.results import Timing
from vosctl.threads import default_threads, env_threads, share_of_cores

ROOT = Path(__file__).resolve().parents[1]


# ----------------------------------------------------------------------------- thread policy


def test_thread_rule_user_then_env_then_free_cores() -> None:
    assert default_threads(3, {"OMP_NUM_THREADS": "1"}, cores=8, running=1, own=1) == 3  # --threads wins
    assert default_threads(None, {"OMP_NUM_THREADS": "2"}, cores=8, running=9, own=1) == 2  # then the environment
    assert default_threads(None, {"OMP_NUM_THREADS": "4,2"}, cores=8, running=1, own=1) == 4  # nested OpenMP list
    assert default_threads(None, {}, cores=8, running=1, own=1) == 8  # alone: every core
    assert default_threads(None, {}, cores=8, running=3, own=1) == 6  # two others running: what is left
    assert default_threads(None, {}, cores=2, running=5, own=1) == 1  # a busy machine: never 0
    assert default_threads(None, {}, cores=4, running=None, own=1) == 4  # no /proc/stat: the cores
    assert default_threads(None, {"OMP_NUM_THREADS": "0"}, cores=2, running=1, own=1) == 2  # invalid value ignored
    # This process's own runnable threads (pools spinning after an import) are not other processes.
    assert default_threads(None, {}, cores=2, running=3, own=3) == 2
    assert default_threads(None, {}, cores=8, running=5, own=2) == 5  # three threads of others
    assert default_threads(None, {}, cores=2, running=2, own=None) == 1  # own unknown: this thread only
    assert env_threads({"OMP_NUM_THREADS": "x"}) is None
    assert share_of_cores(4, cores=2) == 1 and share_of_cores(2, cores=16) == 8


def test_own_running_threads_reads_the_state_after_the_command_name(tmp_path: Path) -> None:
    from vosctl.threads import own_running_threads

    tasks = tmp_path / "task"
    for tid, stat in {
        "10": "10 (python) R 1 10 10 0",
        "11": "11 (a) (b) R) S 1 10 10 0",  # a thread name with ") R)" in it: sleeping
        "12": "12 (omp worker) R 1 10 10 0",
        "13": "13 (x) D 1 10 10 0",
    }.items():
        (tasks / tid).mkdir(parents=True)
        (tasks / tid / "stat").write_text(stat)
    (tasks / "14").mkdir()  # a thread that ended between the listing and the read
    assert own_running_threads(str(tasks)) == 2
    assert own_running_threads(str(tmp_path / "missing")) is None
    assert own_running_threads() >= 1  # this process: at least the calling thread


def test_the_default_rule_does_not_count_this_process_s_own_spinning_threads(monkeypatch) -> None:
    """Right after imports that start thread pools (numpy, OpenCV) three threads of this process
    were runnable on an idle 2-core machine, and the Python API took 1 thread (before round 25)."""
    import vosctl.threads as threads

    monkeypatch.setattr(threads, "running_processes", lambda: 3)
    monkeypatch.setattr(threads, "own_running_threads", lambda: 3)
    assert threads.default_threads(None, {}, cores=2) == 2
    monkeypatch.setattr(threads, "own_running_threads", lambda: 1)  # two threads of another process
    assert threads.default_threads(None, {}, cores=2) == 1


def _python(code: str, env: dict[str, str] | None = None) -> str:
    environment = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=environment, timeout=300, check=True
    )
    return done.stdout.strip().splitlines()[-1]


def test_python_api_threads_set_torch_opencv_and_codecs() -> None:
    code = (
        "import cv2, torch, json\n"
        "from vosctl import Segmenter\n"
        "from vosctl.model.network import SiamDMN\n"
        "from vosctl.threads import codec_threads\n"
        "torch.set_num_threads(3)\n"  # a program (training) that chose its threads and builds a Segmenter
        "Segmenter(SiamDMN(), device='cpu')\n"
        "assert torch.get_num_threads() == 3, torch.get_num_threads()\n"
        "s = Segmenter.from_pretrained('default', device='cpu', threads=2)\n"
        "s2 = Segmenter.from_pretrained('default', device='cpu')\n"  # a second one keeps the process's count
        "print(json.dumps([s.threads, s2.threads, torch.get_num_threads(), cv2.getNumThreads(), "
        "codec_threads(), torch.get_num_interop_threads()]))"
    )
    assert json.loads(_python(code, {"OMP_NUM_THREADS": "1"})) == [2, 2, 2, 2, 2, 1]


def test_cli_threads_option(tmp_path: Path) -> None:
    frames, truth = moving_square(frames=4)
    write_video(tmp_path / "clip.mp4", frames)
    write_mask(tmp_path / "clip.png", truth[0])
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "vosctl.cli",
            "segment",
            str(tmp_path / "clip.mp4"),
            "--mask",
            str(tmp_path / "clip.png"),
        ]
        + ["--png", "--json", "--quiet", "--device", "cpu", "--threads", "2", "-o", str(tmp_path / "out")],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"},
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout.splitlines()[-1])
    assert summary["threads"] == 2
    # segment_fps leaves decode out, fps is end to end: segmenting alone is never slower.
    assert summary["segment_fps"] >= summary["fps"] > 0 and summary["decode_fps"] > 0
    bad = subprocess.run(
        [sys.executable, "-m", "vosctl.cli", "segment", str(tmp_path / "clip.mp4"), "--threads", "0"],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        timeout=60,
    )
    assert bad.returncode == 2


def test_timing_takes_decode_out_of_segment_fps() -> None:
    timing = Timing(frames=100, total_seconds=4.0)
    timing.add_segment(seconds_in_tracker=3.0, decode_seconds=1.0)
    assert timing.fps == 25.0 and timing.segment_fps == 50.0 and timing.decode_fps == 100.0


# ----------------------------------------------------------------------------- precision


def test_precision_auto_only_native() -> None:
    import torch

    from vosctl.engine import Capabilities, choose_precision

    cpu, cuda = torch.device("cpu"), torch.device("cuda", 1)
    avx2 = Capabilities(frozenset({"avx", "avx2", "fma"}))
    skylake = Capabilities(frozenset({"avx2", "avx512f", "avx512bw", "avx512vl", "avx512dq"}))
    cooper = Capabilities(frozenset({"avx2", "avx512f", "avx512bw", "avx512_bf16"}))
    sapphire = Capabilities(frozenset({"avx512f", "avx512_bf16", "amx_bf16", "amx_tile"}))
    assert choose_precision("auto", cpu, avx2) == "fp32"
    assert choose_precision("auto", cpu, skylake) == "fp32"  # AVX-512 without bf16: emulated, slower
    assert choose_precision("auto", cpu, cooper) == "bf16"
    assert choose_precision("auto", cpu, sapphire) == "bf16"
    # oneDNN capped below native bf16: fp32, whatever the CPU has.
    for cap in ("AVX512_CORE", "avx2", "AVX512_CORE_VNNI", "SOMETHING_NEW"):
        assert choose_precision("auto", cpu, Capabilities(sapphire.cpu_flags, cap)) == "fp32", cap
    for cap in ("AVX512_CORE_BF16", "AVX512_CORE_AMX", "ALL", ""):
        assert choose_precision("auto", cpu, Capabilities(sapphire.cpu_flags, cap)) == "bf16", cap
    # Native AVX512_BF16 where the fp32 path runs as oneDNN-fused traces: fp32, the faster and
    # more accurate path there (round 25, AMD Zen 4); AMX tiles (not measured) keep bf16, unless
    # oneDNN is capped below AMX.
    zen4 = Capabilities(cooper.cpu_flags, onednn_fusion=True)
    assert choose_precision("auto", cpu, zen4) == "fp32"
    assert choose_precision("auto", cpu, Capabilities(sapphire.cpu_flags, onednn_fusion=True)) == "bf16"
    for cap in ("AVX512_CORE_BF16", "AVX512_CORE_FP16"):
        assert choose_precision("auto", cpu, Capabilities(sapphire.cpu_flags, cap, onednn_fusion=True)) == "fp32", cap
    for cap in ("AVX10_1_512_AMX", "AVX512_CORE_AMX", ""):
        assert choose_precision("auto", cpu, Capabilities(sapphire.cpu_flags, cap, onednn_fusion=True)) == "bf16", cap
    assert choose_precision("auto", cpu, Capabilities(avx2.cpu_flags, onednn_fusion=True)) == "fp32"
    assert choose_precision("bf16", cpu, zen4) == "bf16"
    # CUDA: fp32 on Hopper (measured faster there), bf16 on Ampere and later others, fp16 on
    # tensor-core GPUs before it, fp32 otherwise.
    assert choose_precision("auto", cuda, Capabilities(cuda_capability=(9, 0))) == "fp32"  # H100, H200
    assert choose_precision("auto", cuda, Capabilities(cuda_capability=(8, 6))) == "bf16"
    assert choose_precision("auto", cuda, Capabilities(cuda_capability=(10, 0))) == "bf16"
    assert choose_precision("bf16", cuda, Capabilities(cuda_capability=(9, 0))) == "bf16"
    assert choose_precision("auto", cuda, Capabilities(cuda_capability=(7, 5))) == "fp16"  # T4
    assert choose_precision("auto", cuda, Capabilities(cuda_capability=(6, 1))) == "fp32"
    # An explicit request is honoured; a bad one is a clear error.
    assert choose_precision("bf16", cpu, avx2) == "bf16"
    assert choose_precision("fp32", cuda, Capabilities(cuda_capability=(9, 0))) == "fp32"
    with pytest.raises(InputError, match="unknown precision"):
        choose_precision("int8", cpu, avx2)


def test_cpu_flags_are_read_from_cpuinfo(tmp_path: Path) -> None:
    from vosctl.engine import cpu_flags

    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nflags\t\t: fpu avx2 avx512_bf16\n\nprocessor\t: 1\nflags\t\t: fpu\n")
    assert cpu_flags(str(info)) == {"fpu", "avx2", "avx512_bf16"}
    assert cpu_flags(str(tmp_path / "missing")) == frozenset()


def test_device_parsing() -> None:
    import torch

    from vosctl.engine import pick_device

    assert pick_device("cpu") == torch.device("cpu")
    for bad in ("gpu", "cuda:x", "cuda:-1", "tpu:0"):
        with pytest.raises(InputError, match="unknown device"):
            pick_device(bad)
    if not torch.cuda.is_available():
        with pytest.raises(InputError, match="no CUDA GPU"):
            pick_device("cuda:1")


# ----------------------------------------------------------------------------- geometry


def test_torch_crop_matches_crop_image() -> None:
    import torch

    rng = np.random.default_rng(0)
    image = cv2.GaussianBlur(rng.integers(0, 256, (240, 320, 3), dtype=np.uint8), (0, 0), 2)
    mask = np.zeros((240, 320), np.uint8)
    mask[50:150, 100:200] = 255
    matrices = [
        crop_matrix(100.3, 50.7, 180.5, 256),  # inside, sub-pixel
        crop_matrix(10.0, 230.0, 90.0, 256),  # a corner: mostly padding
        crop_matrix(160.0, 120.0, 500.0, 256),  # wider than the frame (zoomed out)
        np.array([[2.0, 0.0, -40.0], [0.0, 2.0, 7.5]]),
    ]
    for source, pad in ((image, PAD_COLOUR), (mask[..., None], (0,))):
        tensor = torch.from_numpy(np.ascontiguousarray(source)).permute(2, 0, 1).float()
        crops = crop_torch(tensor, np.stack(matrices), (256, 192), pad).permute(0, 2, 3, 1).numpy()
        for i, matrix in enumerate(matrices):
            reference = crop_image(source if source.shape[2] == 3 else source[..., 0], matrix, (256, 192))
            diff = np.abs(crops[i].reshape(reference.shape) - reference.astype(np.float32))
            # OpenCV interpolates with 1/32-pixel fixed point and rounds to uint8.
            assert diff.max() <= 2.0 and diff.mean() < 0.3, (i, diff.max(), diff.mean())


def test_window_paste_equals_frame_paste() -> None:
    rng = np.random.default_rng(1)
    crop = rng.uniform(0, 1, (256, 256)).astype(np.float32)
    for cx, cy, side in ((160.0, 120.0, 150.0), (5.0, 3.0, 300.0), (310.0, 200.0, 64.0), (1000.0, 1000.0, 50.0)):
        matrix = crop_matrix(cx, cy, side, 256)
        frame = paste_crop(crop, matrix, 320, 240)
        x0, y0, x1, y1 = canvas_window(matrix, 256, 256, 320, 240)
        outside = frame.copy()
        outside[y0:y1, x0:x1] = 0
        assert not outside.any()  # the window holds every pasted pixel
        if x1 > x0 and y1 > y0:
            local = paste_crop(crop, shift_matrix(matrix, x0, y0), x1 - x0, y1 - y0)
            # Equal up to OpenCV's 1/32-pixel fixed-point position (the shifted matrix may round the other way).
            diff = np.abs(local - frame[y0:y1, x0:x1])
            assert diff.max() <= 1 / 32 and diff.mean() < 1e-3


def test_grid_matrix_pastes_the_mask_grid_where_its_canvas_upsampling_would_go() -> None:
    """One bilinear resampling of the stride-2 grid lands where upsampling it to the canvas
    (``F.interpolate``, as training saw the logits) and pasting that would put it: on a linear ramp
    both are exact, so they agree away from the borders; a half-pixel slip would shift the ramp."""
    import torch
    import torch.nn.functional as F

    from vosctl.geometry import grid_matrix

    ys, xs = np.mgrid[:24, :32].astype(np.float32)
    grid = 3.0 * xs - 2.0 * ys  # a (24, 32) map on the grid of a (48, 64) canvas
    canvas = F.interpolate(torch.from_numpy(grid)[None, None], size=(48, 64), mode="bilinear", align_corners=False)
    canvas = canvas[0, 0].numpy()
    matrix = np.array([[0.7, 0.0, -20.0], [0.0, 0.7, -9.0]])  # frame -> canvas
    via_canvas = paste_crop(canvas, matrix, 120, 90)
    once = paste_crop(grid, grid_matrix(matrix, 0.5), 120, 90)
    # Frame pixels whose canvas position is at least 2 px inside its edges (where both are linear).
    inverse = cv2.invertAffineTransform(matrix)
    x0, y0 = (inverse @ np.array([2.0, 2.0, 1.0])).round().astype(int) + 1
    x1, y1 = (inverse @ np.array([61.0, 45.0, 1.0])).round().astype(int) - 1
    np.testing.assert_allclose(once[y0:y1, x0:x1], via_canvas[y0:y1, x0:x1], atol=1e-3)
    # And the ramp's value there is the grid coordinate of the frame pixel: g = (u + 0.5) / 2 - 0.5.
    u = 0.7 * x0 - 20.0
    assert abs(once[y0, x0] - (3.0 * ((u + 0.5) / 2 - 0.5) - 2.0 * ((0.7 * y0 - 9.0 + 0.5) / 2 - 0.5))) < 1e-3
    assert np.allclose(grid_matrix(matrix, 1.0), matrix)


def test_local_mask_crop_equals_frame_crop() -> None:
    mask = np.zeros((240, 320), bool)
    mask[40:90, 200:260] = True
    local = LocalMask.from_frame(mask)
    assert local.mask.shape == (50, 60) and (local.x0, local.y0) == (200, 40)
    assert (local.to_frame(320, 240) == mask * 255).all()
    matrix = crop_matrix(230.0, 60.0, 150.0, 256)
    out = np.empty((256, 256), np.uint8)
    np.testing.assert_array_equal(
        local.crop(matrix, (256, 256), out), crop_image(mask.astype(np.uint8) * 255, matrix, 256)
    )
    assert LocalMask.from_frame(np.zeros((240, 320), bool)).is_empty
    ys, xs = np.mgrid[-5:245:7, -5:325:3]  # off the frame too: 0 there
    frame = np.pad(mask * 255, 5).astype(np.uint8)
    np.testing.assert_array_equal(local.values_at(ys.ravel(), xs.ravel()), frame[ys.ravel() + 5, xs.ravel() + 5])
    assert not LocalMask.empty().values_at(np.array([1]), np.array([2])).any()


def test_window_merge_equals_frame_merge() -> None:
    rng = np.random.default_rng(2)
    height, width = 120, 160
    windows = [(10, 10, 70, 60), (50, 40, 110, 100), (120, 0, 160, 40), (0, 0, 0, 0)]
    logits_full = np.full((4, height, width), -30.0, np.float32)  # as the tracker pastes: background outside
    local_logits, local_own = [], []
    for i, (x0, y0, x1, y1) in enumerate(windows):
        noise = rng.uniform(0, 1, (max(y1 - y0, 1), max(x1 - x0, 1))).astype(np.float32)
        p = np.clip(cv2.GaussianBlur(noise, (0, 0), 2) * 4 - 1.5, 1e-6, 1 - 1e-6)[: y1 - y0, : x1 - x0]
        logits = np.log(p / (1 - p)).astype(np.float32)
        logits_full[i, y0:y1, x0:x1] = logits
        local_logits.append(logits)
        local_own.append(logits > 0)
    prev_full = (rng.uniform(0, 1, (4, height, width)) > 0.6).astype(np.uint8) * 255
    prev_full[3] = 0
    prev = [LocalMask.from_frame(m > 0) for m in prev_full]
    ids = np.array([3, 5, 9, 11], np.uint8)
    expected = merge_objects(logits_full, logits_full > 0, prev_full, ids, 1.0)
    labels = merge_windows(np.zeros((height, width), np.uint8), windows, local_logits, local_own, prev, ids, 1.0)
    assert len(np.unique(expected)) == 4  # the three drawn objects and background, contested pixels included
    assert np.count_nonzero((logits_full > 0).sum(0) > 1) > 20
    np.testing.assert_array_equal(labels, expected)


# ----------------------------------------------------------------------------- large frames


def _embed_4k(frames: list[np.ndarray], labels: list[np.ndarray], x: int, y: int):
    """The scene placed in a 3840x2160 frame whose rest is the crop padding colour (crops stay identical)."""
    big_frames, big_labels = [], []
    for frame, lab in zip(frames, labels):
        big = np.empty((2160, 3840, 3), np.uint8)
        big[:] = PAD_COLOUR
        big[y : y + frame.shape[0], x : x + frame.shape[1]] = frame
        big_lab = np.zeros((2160, 3840), np.uint8)
        big_lab[y : y + lab.shape[0], x : x + lab.shape[1]] = lab
        big_frames.append(big)
        big_labels.append(big_lab)
    return big_frames, big_labels


def test_4k_frame_through_the_tracker_is_window_local() -> None:
    from vosctl import Segmenter

    segmenter = Segmenter.from_pretrained("default", device="cpu")
    frames, truth = crossing_shapes(frames=16)
    small = [r.labels for r in segmenter.track(frames, labels=truth[0])]
    big_frames, big_truth = _embed_4k(frames, truth, 2000, 1200)
    state, _ = segmenter.init_state(big_frames[0], labels=big_truth[0])
    for t in range(1, len(big_frames)):
        result = segmenter.step(state, big_frames[t])
        inside = result.labels[1200:1440, 2000:2320]
        assert iou(inside == 1, small[t] == 1) >= 0.98 and iou(inside == 2, small[t] == 2) >= 0.98, t
        assert np.count_nonzero(result.labels) == np.count_nonzero(inside)  # nothing drawn elsewhere
        assert iou(result.labels == 1, big_truth[t] == 1) >= 0.7
    # Nothing frame-sized is kept per object: priors and scratch follow the objects' windows.
    frame_pixels = 3840 * 2160
    assert all(m.mask.size < frame_pixels / 50 for m in state.prev_masks)
    assert all(buffer.size < frame_pixels / 20 for buffer in state.scratch.values())


def test_full_frame_on_a_4k_frame_is_a_clear_error() -> None:
    from vosctl import Segmenter, SegmenterConfig

    segmenter = Segmenter.from_pretrained("default", device="cpu", config=SegmenterConfig(full_frame=True))
    frame = texture(3, 2160, 3840, cells=4)
    labels = np.zeros((2160, 3840), np.uint8)
    labels[1000:1060, 1800:1860] = 1
    state, _ = segmenter.init_state(frame, labels=labels)
    with pytest.raises(InputError, match="--full-frame would need a .* network input"):
        segmenter.step(state, frame)


def test_prefetch_keeps_order_passes_errors_and_stops() -> None:
    import threading

    from vosctl.prefetch import prefetch

    with prefetch(range(50), depth=3) as items:
        assert list(items) == list(range(50))

    def failing():
        yield 1
        raise InputError("cannot decode frame 1")

    with prefetch(failing()) as items:
        assert next(items) == 1
        with pytest.raises(InputError, match="frame 1"):
            next(items)
    before = threading.active_count()
    with prefetch(iter(range(10**9))) as items:  # the consumer stops early: the reader must stop too
        assert next(items) == 0
    assert threading.active_count() <= before
    with prefetch([1, 2], enabled=False) as items:
        assert list(items) == [1, 2]


def test_device_loop_crops_match_the_host_loop() -> None:
    """The CUDA loop (frame uploaded once, crops by grid_sample) run on CPU gives the host loop's masks."""
    from vosctl import Segmenter

    frames, truth = crossing_shapes(frames=12)
    host = Segmenter.from_pretrained("default", device="cpu")
    device_loop = Segmenter.from_pretrained("default", device="cpu")
    device_loop._on_device = True  # the CUDA code path, on the CPU
    expected = [r.labels for r in host.track(frames, labels=truth[0])]
    got = [r.labels for r in device_loop.track(frames, labels=truth[0])]
    for a, b in zip(expected[1:], got[1:]):
        for object_id in (1, 2):
            assert iou(a == object_id, b == object_id) >= 0.97


# ----------------------------------------------------------------------------- ONNX Runtime engine


def test_exportable_xcorr_equals_the_network_one() -> None:
    import torch

    from vosctl.model.network import SiamDMN
    from vosctl.onnx_engine import _xcorr_exportable

    generator = torch.Generator().manual_seed(0)
    search = torch.randn(3, 16, 16, 20, generator=generator)
    kernel = torch.randn(3, 16, 8, 8, generator=generator)
    torch.testing.assert_close(_xcorr_exportable(search, kernel), SiamDMN._depthwise_xcorr(search, kernel))


def test_onnx_cache_key_follows_the_weights(tmp_path: Path, monkeypatch) -> None:
    pytest.importorskip("onnxruntime")
    import torch

    from vosctl.model.network import NetworkConfig, SiamDMN
    from vosctl.onnx_engine import cache_dir, cache_key

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert cache_dir() == tmp_path / "vosctl" / "onnx"
    model = SiamDMN(NetworkConfig())
    key = cache_key(model)
    assert key == cache_key(model)
    with torch.no_grad():
        model.score_out.bias.add_(1.0)
    assert cache_key(model) != key


def test_onnx_engine_falls_back_to_torch(monkeypatch, capsys) -> None:
    import vosctl.onnx_engine as onnx_engine
    from vosctl.model.network import NetworkConfig, SiamDMN

    def broken(*args, **kwargs):
        raise RuntimeError("export failed")

    monkeypatch.setattr(onnx_engine, "OrtEngine", broken)
    engine = onnx_engine.make_engine(SiamDMN(NetworkConfig()), "onnx", "cpu", "auto", 1)
    assert engine.backend == "torch"
    assert "using torch" in capsys.readouterr().err
    with pytest.raises(InputError, match="unknown engine"):
        onnx_engine.make_engine(SiamDMN(NetworkConfig()), "tensorrt", "cpu", "auto", 1)


def test_auto_engine_keeps_torch_where_its_fp32_traces_are_fused(monkeypatch) -> None:
    """engine="auto": ONNX Runtime only where torch runs fp32 without oneDNN-fused traces (on a
    Zen 4 with them, torch was 1.57x ONNX Runtime end to end, round 28)."""
    import vosctl.engine as engine_module
    import vosctl.onnx_engine as onnx_engine
    from vosctl.model.network import NetworkConfig, SiamDMN

    built = []
    monkeypatch.setattr(onnx_engine, "OrtEngine", lambda *args, **kwargs: built.append(args) or "ort")
    model = SiamDMN(NetworkConfig())
    monkeypatch.setattr(engine_module, "onednn_fusion_available", lambda device: True)
    fused = onnx_engine.make_engine(model, "auto", "cpu", "fp32", 1)
    assert fused.backend == "torch" and fused.fuse and not built
    monkeypatch.setattr(engine_module, "onednn_fusion_available", lambda device: False)
    assert onnx_engine.make_engine(model, "auto", "cpu", "fp32", 1) == "ort" and len(built) == 1
    assert onnx_engine.make_engine(model, "auto", "cpu", "bf16", 1).backend == "torch"  # bf16: torch


@pytest.mark.skipif(
    os.environ.get("VOSCTL_TEST_ONNX") != "1",
    reason="exports the model (minutes on a loaded machine): VOSCTL_TEST_ONNX=1",
)
def test_onnx_engine_matches_torch() -> None:
    """ONNX Runtime gives torch's outputs for several object counts and canvas sizes (one dynamic export)."""
    pytest.importorskip("onnxruntime")
    from vosctl.engine import Engine
    from vosctl.model.checkpoint import load_checkpoint
    from vosctl.onnx_engine import OrtEngine

    model, _ = load_checkpoint("default")
    ort_engine, torch_engine = OrtEngine(model, threads=1), Engine(model, device="cpu", precision="fp32")
    rng = np.random.default_rng(0)
    for n, h, w in ((1, 256, 256), (3, 256, 256), (2, 384, 320)):
        search = rng.integers(0, 256, (n, h, w, 3), dtype=np.uint8)
        template = rng.integers(0, 256, (n, 128, 128, 3), dtype=np.uint8)
        embedding = torch_engine.embed(template, np.ones((n, 128, 128), np.float32))
        prior = np.zeros((n, h, w), np.uint8)
        prior[:, h // 3 : h // 2, w // 3 : w // 2] = 255
        bias = rng.normal(0, 1, (n, 1, h // 16, w // 16)).astype(np.float32)
        expected = torch_engine.search(search, embedding, prior, bias)
        got = ort_engine.search(search, embedding, prior, bias)
        np.testing.assert_allclose(got.mask_logits, expected.mask_logits, rtol=1e-4, atol=2e-4)
        for name in ("peak", "similarity", "presence"):
            np.testing.assert_allclose(getattr(got, name), getattr(expected, name), atol=2e-5, err_msg=name)


# ----------------------------------------------------------------------------- traces and write-behind


def test_write_behind_keeps_order_and_hands_back_errors() -> None:
    import threading
    import time

    from vosctl.prefetch import write_behind

    before = threading.active_count()
    seen: list[int] = []
    with write_behind(depth=2) as submit:
        for i in range(50):
            submit(seen.append, i)
    assert seen == list(range(50))  # every write has run when the block ends

    written: list[int] = []

    def write(i: int) -> None:
        if i == 3:
            raise OSError(28, "No space left on device")
        written.append(i)

    with pytest.raises(OSError, match="No space left"):
        with write_behind(depth=1) as submit:
            for i in range(100):
                submit(write, i)
    assert written == [0, 1, 2]  # nothing after the failed write

    # The caller fails: writes still queued are skipped, and the thread has ended when the block exits.
    skipped: list[int] = []
    with pytest.raises(RuntimeError, match="tracker failed"):
        with write_behind(depth=4) as submit:
            submit(time.sleep, 0.05)
            submit(skipped.append, 1)
            raise RuntimeError("tracker failed")
    assert skipped == []
    assert threading.active_count() <= before

    inline: list[str] = []
    with write_behind(enabled=False) as submit:
        submit(lambda: inline.append(threading.current_thread().name))
    assert inline == [threading.current_thread().name]


def _random_inputs(engine, objects: int, size: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    t = engine.config.template_size
    template = rng.integers(0, 256, (objects, t, t, 3), dtype=np.uint8)
    masks = np.zeros((objects, t, t), np.float32)
    masks[:, t // 4 : 3 * t // 4, t // 4 : 3 * t // 4] = 1.0
    search = rng.integers(0, 256, (objects, size, size, 3), dtype=np.uint8)
    prior = np.zeros((objects, size, size), np.uint8)
    prior[:, size // 3 : 2 * size // 3, size // 3 : 2 * size // 3] = 255
    bias = rng.normal(0, 1, (objects, 1, size // 16, size // 16)).astype(np.float32)
    return template, masks, search, prior, bias


def test_traced_engine_matches_eager_and_traces_each_shape_once() -> None:
    import torch

    from vosctl.engine import TRACE_AFTER_USES, TRACE_CACHE_SIZE, Engine
    from vosctl.model.network import NetworkConfig, SiamDMN

    torch.manual_seed(0)
    model = SiamDMN(NetworkConfig(template_size=64, search_size=128, mask_stride=2, presence_head=True)).eval()
    traced = Engine(model, device="cpu", precision="fp32")
    eager = Engine(model, device="cpu", precision="fp32", trace=False)
    assert traced.trace and not eager.trace
    for objects, size in ((1, 128), (2, 128), (1, 160)):
        template, masks, search, prior, bias = _random_inputs(traced, objects, size, seed=objects)
        emb_t, emb_e = traced.embed(template, masks), eager.embed(template, masks)
        torch.testing.assert_close(emb_t.kernel, emb_e.kernel)
        for use in range(TRACE_AFTER_USES + 2):  # eager at first, traced from the TRACE_AFTER_USES-th use
            a = traced.search(search, emb_t, prior, bias if use % 2 else None)
            b = eager.search(search, emb_e, prior, bias if use % 2 else None)
            np.testing.assert_allclose(a.mask_logits, b.mask_logits, rtol=1e-4, atol=1e-3)
            for field in ("peak", "similarity", "presence"):
                np.testing.assert_allclose(getattr(a, field), getattr(b, field), atol=1e-4)
    assert len(traced._traces) == 3  # one per search shape
    for size in range(64, 64 + 16 * (TRACE_CACHE_SIZE + 2), 16):  # many shapes: the cache stays bounded
        template, masks, search, prior, bias = _random_inputs(traced, 1, size)
        embedding = traced.embed(template, masks)
        for _ in range(TRACE_AFTER_USES):
            traced.search(search, embedding, prior, bias)
    assert len(traced._traces) == TRACE_CACHE_SIZE


def test_traced_engine_keeps_a_trace_per_mask_region() -> None:
    """A mask region is baked into a trace: the same shapes with and without one are two traces."""
    import torch

    from vosctl.engine import TRACE_AFTER_USES, Engine
    from vosctl.model.network import NetworkConfig, SiamDMN

    torch.manual_seed(0)
    model = SiamDMN(NetworkConfig(template_size=64, search_size=128, mask_stride=2, presence_head=True)).eval()
    traced = Engine(model, device="cpu", precision="fp32")
    eager = Engine(model, device="cpu", precision="fp32", trace=False)
    template, masks, search, prior, bias = _random_inputs(traced, 2, 128, seed=3)
    emb_t, emb_e = traced.embed(template, masks), eager.embed(template, masks)
    for _ in range(TRACE_AFTER_USES + 2):
        for region in (None, (4, 28, 6, 26)):  # 128 px: a 32 x 32 stride-4 grid
            a = traced.search(search, emb_t, prior, bias, region)
            b = eager.search(search, emb_e, prior, bias, region)
            np.testing.assert_allclose(a.mask_logits, b.mask_logits, rtol=1e-4, atol=1e-3)
            np.testing.assert_allclose(a.presence, b.presence, atol=1e-4)
            assert a.mask_logits.shape == (2, 64, 64)  # the stride-2 mask grid of the 128 px canvas
            if region is not None:  # outside it (2 grid cells a region cell): the background logit
                assert a.mask_logits[:, : 2 * 4].max() < -20 and a.mask_logits[:, :, 2 * 26 :].max() < -20
                assert a.mask_logits[:, 2 * 4 : 2 * 28, 2 * 6 : 2 * 26].max() > -20
    assert len(traced._traces) == 2


def test_fused_traces_run_onednn_groups_match_eager_and_restore_the_switch() -> None:
    """oneDNN Graph fusion: the frozen traces run fused groups, give eager's outputs, and leave
    torch's process-wide fusion switch as it was (also after an error inside the block)."""
    import torch

    from vosctl.engine import TRACE_AFTER_USES, Engine, onednn_fusion, onednn_fusion_available
    from vosctl.model.network import NetworkConfig, SiamDMN

    if not onednn_fusion_available(torch.device("cpu")):
        pytest.skip("no oneDNN Graph fusion here (not x86-64, or torch without oneDNN)")
    torch.manual_seed(0)
    model = SiamDMN(NetworkConfig(template_size=64, search_size=128, mask_stride=2, presence_head=True)).eval()
    fused = Engine(model, device="cpu", precision="fp32")
    plain = Engine(model, device="cpu", precision="fp32", fuse=False)
    eager = Engine(model, device="cpu", precision="fp32", trace=False)
    assert fused.fuse and fused.trace and not plain.fuse
    # Only where it was built and measured: x86-64 CPUs (not ARM, not CUDA).
    assert not onednn_fusion_available(torch.device("cpu"), machine="arm64")
    assert not onednn_fusion_available(torch.device("cuda"), machine="x86_64")
    template, masks, search, prior, bias = _random_inputs(fused, 2, 128, seed=5)
    embeddings = [engine.embed(template, masks) for engine in (fused, plain, eager)]
    switch = torch.jit.onednn_fusion_enabled()
    fused_groups = []
    # Past the trace's first call: TorchScript profiles it, and the fused graph runs from the next one.
    for _ in range(TRACE_AFTER_USES + 4):
        for region in (None, (4, 28, 6, 26)):
            a = fused.search(search, embeddings[0], prior, bias, region)
            fused_groups.append(str(torch.jit.last_executed_optimized_graph()).count("FusionGroup"))
            b = plain.search(search, embeddings[1], prior, bias, region)
            c = eager.search(search, embeddings[2], prior, bias, region)
            for result in (a, b):
                np.testing.assert_allclose(result.mask_logits, c.mask_logits, rtol=1e-4, atol=1e-3)
                for field in ("peak", "similarity", "presence"):
                    np.testing.assert_allclose(getattr(result, field), getattr(c, field), atol=1e-4)
            assert torch.jit.onednn_fusion_enabled() == switch
    assert min(fused_groups[-4:]) > 0  # the fused graph ran (eager calls before the trace: nothing to fuse)
    plain.search(search, embeddings[1], prior, bias)
    assert "FusionGroup" not in str(torch.jit.last_executed_optimized_graph())
    assert len(fused._traces) == 2 and all(not list(t.parameters()) for t in fused._traces.traces.values())  # frozen
    assert all(list(t.parameters()) for t in plain._traces.traces.values())
    with pytest.raises(RuntimeError, match="inside"):
        with onednn_fusion(not switch):
            assert torch.jit.onednn_fusion_enabled() != switch
            raise RuntimeError("inside")
    assert torch.jit.onednn_fusion_enabled() == switch


def test_a_fused_trace_that_fails_at_run_time_falls_back_once_and_the_job_goes_on(monkeypatch) -> None:
    """oneDNN Graph refusing a graph at run time (AMD Zen 4, a bf16 trace: "could not add op to
    the graph") must not end a job: the call is answered unfused, with eager's outputs, the engine
    drops fusion and its fused traces and warns once. An error of an unfused run is not hidden."""
    import warnings

    import torch

    from vosctl.engine import Engine
    from vosctl.model.network import NetworkConfig, SiamDMN

    torch.manual_seed(0)
    model = SiamDMN(NetworkConfig(template_size=64, search_size=128, mask_stride=2, presence_head=True)).eval()
    engine = Engine(model, device="cpu", precision="fp32", fuse=True)
    eager = Engine(model, device="cpu", precision="fp32", trace=False)
    template, masks, search, prior, bias = _random_inputs(engine, 2, 128, seed=3)
    embedding = eager.embed(template, masks)
    expected = eager.search(search, embedding, prior, bias)

    class RefusedByOneDNN(torch.nn.Module):
        def forward(self, *inputs):
            raise RuntimeError("could not add op to the graph\nmore detail")

    engine._traces.traces[("stale", True)] = RefusedByOneDNN()
    monkeypatch.setattr(engine, "_traced", lambda graph, inputs, cache, variant=None: RefusedByOneDNN())
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = engine.search(search, embedding, prior, bias)
        np.testing.assert_allclose(result.mask_logits, expected.mask_logits, rtol=1e-4, atol=1e-3)
        np.testing.assert_allclose(result.presence, expected.presence, atol=1e-4)
        assert not engine.fuse and len(engine._traces) == 0
        assert [str(w.message) for w in caught] == [
            "oneDNN Graph fusion failed on this machine (could not add op to the graph); running without it"
        ]
        # Unfused now: the same failing runner is an error of its own, raised as it is, and no new warning.
        with pytest.raises(RuntimeError, match="could not add op"):
            engine.search(search, embedding, prior, bias)
        assert len(caught) == 1
    monkeypatch.undo()
    again = engine.search(search, embedding, prior, bias)  # the engine's own path, unfused, still works
    np.testing.assert_allclose(again.mask_logits, expected.mask_logits, rtol=1e-4, atol=1e-3)


def test_search_outputs_do_not_depend_on_the_memory_format_of_the_input() -> None:
    """The engine hands the network NCHW-contiguous input (its per-channel normalisation is ~8x
    slower on channels_last on a CPU) and the FPN upsamples in channels_last; either layout of the
    same crop gives the same outputs, eager and traced."""
    import torch

    from vosctl.engine import TRACE_AFTER_USES, Engine
    from vosctl.model.network import NetworkConfig, SiamDMN

    torch.manual_seed(0)
    model = SiamDMN(NetworkConfig(template_size=64, search_size=128, mask_stride=2, presence_head=True)).eval()
    traced = Engine(model, device="cpu", precision="fp32")
    eager = Engine(model, device="cpu", precision="fp32", trace=False)
    template, masks, search, prior, bias = _random_inputs(traced, 1, 128, seed=3)
    tensor = traced._images_to_tensor(search)
    assert tensor.dtype == torch.float32 and tensor.is_contiguous()
    layouts = (tensor, tensor.contiguous(memory_format=torch.channels_last))
    assert not layouts[1].is_contiguous()
    reference = eager.search(search, eager.embed(template, masks), prior, bias)
    for engine in (traced, eager):
        embedding = engine.embed(template, masks)
        prior_t, bias_t = engine.prior_and_bias(prior, bias)
        for _ in range(TRACE_AFTER_USES + 1):  # the traced engine's last calls run its trace
            for layout in layouts:
                result = engine.search_tensors(layout, embedding, prior_t, bias_t)
                np.testing.assert_allclose(result.mask_logits, reference.mask_logits, rtol=1e-4, atol=1e-3)
                np.testing.assert_allclose(result.presence, reference.presence, atol=1e-4)
    assert traced._traces.traces


def test_one_layout_policy_for_the_crops_of_every_path() -> None:
    """input_memory_format picks the crops' layout (NCHW on the CPU, channels_last on CUDA), and both
    paths that make crops follow the engine's choice: the CPU engine's uint8 conversion and the
    tracker's on-device crops (run here on CPU tensors, with the engine's choice switched)."""
    import torch

    from vosctl import Segmenter
    from vosctl.engine import input_memory_format
    from vosctl.geometry import crop_matrix
    from vosctl.model.network import NetworkConfig, SiamDMN

    assert input_memory_format(torch.device("cpu")) == torch.contiguous_format
    assert input_memory_format(torch.device("cuda")) == torch.channels_last
    model = SiamDMN(NetworkConfig(template_size=64, search_size=128, mask_stride=2, presence_head=True)).eval()
    segmenter = Segmenter(model, device="cpu")
    engine = segmenter.engine
    crops = np.zeros((2, 128, 128, 3), np.uint8)
    assert engine.input_format == torch.contiguous_format and engine._images_to_tensor(crops).is_contiguous()
    frame = torch.zeros(3, 120, 160)
    matrices = [crop_matrix(80.0, 60.0, 100.0, 128), crop_matrix(40.0, 30.0, 60.0, 128)]
    prior, bias = np.zeros((2, 128, 128), np.uint8), np.zeros(2, np.float32)
    for layout in (torch.contiguous_format, torch.channels_last):
        engine.input_format = layout
        search = segmenter._device_inputs(frame, matrices, (128, 128), prior, bias)[0]
        assert search.shape == (2, 3, 128, 128) and search.is_contiguous(memory_format=layout)
        assert layout == torch.contiguous_format or not search.is_contiguous()


def test_tracker_gives_the_same_masks_traced_or_eager() -> None:
    from vosctl import Segmenter

    frames, truth = crossing_shapes(frames=12)
    runs = []
    for trace in (True, False):
        segmenter = Segmenter.from_pretrained("default", device="cpu")
        segmenter.engine.trace = trace
        runs.append([r.labels for r in segmenter.track(frames, labels=truth[0])])
    disagreement = [np.mean(a != b) for a, b in zip(*runs)]
    assert max(disagreement) < 1e-3, disagreement
    assert np.mean([iou(a > 0, t > 0) for a, t in zip(runs[0][1:], truth[1:])]) > 0.5


def test_template_embeddings_are_traced_by_their_own_count_and_match_eager() -> None:
    """The template branch is traced only when enough embeddings are to come, gives eager's
    outputs, and its traces are cached apart (they never push out the search traces)."""
    import dataclasses

    import torch

    from vosctl import Segmenter
    from vosctl.engine import EMBED_TRACE_MIN_REMAINING, TRACE_AFTER_USES, Engine
    from vosctl.memory import MemoryConfig
    from vosctl.model.network import NetworkConfig, SiamDMN

    torch.manual_seed(0)
    model = SiamDMN(NetworkConfig(template_size=64, search_size=128, presence_head=True)).eval()
    traced = Engine(model, "cpu", "fp32")
    eager = Engine(model, "cpu", "fp32", trace=False)
    template, masks, *_ = _random_inputs(traced, 2, 128)
    traced.expect_calls(10_000, embeds=TRACE_AFTER_USES + 5)  # a long clip, but few memory updates
    for _ in range(TRACE_AFTER_USES + 5):
        traced.embed(template, masks)
    assert not traced._embed_traces
    traced.expect_calls(10_000, embeds=TRACE_AFTER_USES + EMBED_TRACE_MIN_REMAINING)
    for _ in range(TRACE_AFTER_USES + 3):  # eager, then traced (and fused where oneDNN is) from the 8th use
        a, b = traced.embed(template, masks), eager.embed(template, masks)
        torch.testing.assert_close(a.kernel, b.kernel, atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(a.prototype, b.prototype, atol=1e-4, rtol=1e-4)
    assert len(traced._embed_traces) == 1 and not traced._traces

    # The segmenter counts the embeddings from the memory's schedule: one batched call per update.
    segmenter = Segmenter(model, device="cpu")
    segmenter.expect_frames(600)
    assert segmenter.engine.expected_embeds == 600 // segmenter.config.memory.update_every
    segmenter.config = dataclasses.replace(segmenter.config, memory=MemoryConfig(bank_size=0))
    segmenter.expect_frames(600)
    assert segmenter.engine.expected_embeds == 0
    segmenter.expect_frames(None)
    assert segmenter.engine.expected_embeds is None


def test_short_clips_are_not_traced() -> None:
    import torch

    from vosctl.engine import TRACE_AFTER_USES, TRACE_MIN_REMAINING, Engine, worth_tracing
    from vosctl.model.network import NetworkConfig, SiamDMN

    assert not worth_tracing(TRACE_AFTER_USES - 1, None)
    assert worth_tracing(TRACE_AFTER_USES, None)  # length unknown (a generator): trace
    assert worth_tracing(TRACE_AFTER_USES, TRACE_AFTER_USES + TRACE_MIN_REMAINING)
    assert not worth_tracing(TRACE_AFTER_USES, TRACE_AFTER_USES + TRACE_MIN_REMAINING - 1)

    torch.manual_seed(0)
    engine = Engine(SiamDMN(NetworkConfig(template_size=64, search_size=128)).eval(), "cpu", "fp32")
    template, masks, search, prior, bias = _random_inputs(engine, 1, 128)
    embedding = engine.embed(template, masks)
    engine.expect_calls(TRACE_AFTER_USES + 5)  # a short clip
    for _ in range(TRACE_AFTER_USES + 5):
        engine.search(search, embedding, prior, bias)
    assert not engine._traces
    engine.expect_calls(None)  # a new job of unknown length: counting starts again
    for _ in range(TRACE_AFTER_USES):
        engine.search(search, embedding, prior, bias)
    assert len(engine._traces) == 1


def _trained_colour_model():
    """A small colour_input network whose colour branch acts (as if trained; it starts at zero)."""
    import torch

    from vosctl.model.network import NetworkConfig, SiamDMN

    torch.manual_seed(1)
    config = NetworkConfig(template_size=64, search_size=128, mask_stride=2, presence_head=True, colour_input=True)
    model = SiamDMN(config).eval()
    torch.nn.init.normal_(model.colour_in[2].weight, std=0.5)
    return model


def test_a_colour_input_network_runs_through_traces_like_eager() -> None:
    """The colour table is one more template input of the traced search graphs (and the exported one, below)."""
    from vosctl.engine import TRACE_AFTER_USES, Engine

    model = _trained_colour_model()
    traced = Engine(model, device="cpu", precision="fp32")
    eager = Engine(model, device="cpu", precision="fp32", trace=False)
    template, masks, search, prior, bias = _random_inputs(traced, 2, 128, seed=4)
    embedding = eager.embed(template, masks)
    assert embedding.colour is not None and embedding.colour.shape == (2, 4096)
    expected = eager.search(search, embedding, prior, bias)
    for _ in range(TRACE_AFTER_USES + 1):
        got = traced.search(search, traced.embed(template, masks), prior, bias)
    assert traced._traces
    np.testing.assert_allclose(got.mask_logits, expected.mask_logits, rtol=1e-4, atol=1e-3)


def test_a_colour_input_network_exports_to_onnx() -> None:
    pytest.importorskip("onnxruntime")

    from vosctl.engine import Engine
    from vosctl.onnx_engine import OrtEngine

    model = _trained_colour_model()
    eager = Engine(model, device="cpu", precision="fp32", trace=False)
    template, masks, search, prior, bias = _random_inputs(eager, 2, 128, seed=4)
    embedding = eager.embed(template, masks)
    expected = eager.search(search, embedding, prior, bias)
    exported = OrtEngine(model, threads=1).search(search, embedding, prior, bias)
    np.testing.assert_allclose(exported.mask_logits, expected.mask_logits, rtol=1e-4, atol=2e-4)
