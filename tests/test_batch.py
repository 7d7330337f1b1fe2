"""Batches: manifests, output collisions, --workers, --ray, worker deaths, resume (issue #10)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from synth import moving_square, run_vosctl, write_palette_png, write_video

from vosctl.jobs.batch import TIMING_KEYS, find_collisions, jobs_from_manifest, run_batch, run_job_task
from vosctl.jobs.manifest import ManifestError, read_manifest
from vosctl.jobs.pool import LocalBackend, TaskFailed
from vosctl.jobs.segment import JobPlan, SegmentOptions

TESTS = Path(__file__).resolve().parent
ROOT = TESTS.parent


vosctl = run_vosctl


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> Path:
    """Three tiny clips c0..c2.mp4 (8 frames, 96x72) with first-frame masks c0..c2.png."""
    root = tmp_path_factory.mktemp("clips")
    for i in range(3):
        pairs = list(moving_square(8, 96, 72, seed=i))
        write_video(root / f"c{i}.mp4", [rgb for rgb, _ in pairs])
        write_palette_png(root / f"c{i}.png", pairs[0][1])
    return root


def inputs(clips: Path) -> list[str]:
    return [str(clips / f"c{i}.mp4") for i in range(3)]


def json_lines(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def without_timing(summary: dict) -> dict:
    """What must match between a serial and a parallel run: not the speeds, nor the thread count
    (a worker has its share of the cores, a serial run all of them)."""
    return {k: v for k, v in summary.items() if k not in (*TIMING_KEYS, "threads")}


def comparable(stdout: str, folder: Path) -> list[str]:
    """The JSON lines without timings, output folder renamed, sorted (completion order varies)."""
    rows = [json.dumps(without_timing(s), sort_keys=True).replace(str(folder), "OUT") for s in json_lines(stdout)]
    return sorted(rows)


def mask_bytes(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*.png"))}


# --------------------------------------------------------------------------- manifests


def test_manifest_bad_rows_all_reported_exit_2_nothing_run(clips, tmp_path) -> None:
    manifest = tmp_path / "jobs.csv"
    manifest.write_text(
        "input,mask,box,output,start_frame,direction\n"
        f"{clips / 'c0.mp4'},{clips / 'c0.png'},,out/a,,\n"  # line 2: good
        f"{clips / 'missing.mp4'},{clips / 'c0.png'},,out/b,,\n"  # line 3: no such input
        f'{clips / "c1.mp4"},,"1,2,3",out/c,,\n'  # line 4: a box needs 4 numbers
        f"{clips / 'c2.mp4'},{clips / 'c2.png'},,out/d,-1,sideways\n"  # line 5: two problems
    )
    run = vosctl("segment", "--manifest", str(manifest), "--json")
    assert run.returncode == 2, run.stderr
    assert run.stdout == ""
    lines = run.stderr.strip().splitlines()
    assert all(line.startswith("vosctl: error: jobs.csv:") for line in lines), lines
    assert any("jobs.csv:3:" in line and "missing.mp4" in line for line in lines)
    assert any("jobs.csv:4:" in line and "box" in line for line in lines)
    assert any("jobs.csv:5:" in line and "start_frame" in line for line in lines)
    assert any("jobs.csv:5:" in line and "direction" in line for line in lines)
    assert not any("jobs.csv:2:" in line for line in lines)
    assert not (tmp_path / "out").exists(), "nothing may run when a row is bad"


def test_jsonl_manifest_from_stdin_maps_prompt_fields(clips, tmp_path, monkeypatch) -> None:
    import io

    monkeypatch.chdir(clips)
    text = "\n".join(
        json.dumps(row)
        for row in [
            {"input": "c0.mp4", "mask": "c0.png", "mask_at": ["4:c1.png"], "direction": "both", "png": True},
            {
                "input": "c1.mp4",
                "box": [[10, 10, 20, 20], "30,30,5,5"],
                "box_at": ["3:1,2,3,4", "5:1,1,9,9:2"],
                "output": "o1",
            },
            {},  # blank-ish rows are reported, not skipped silently
        ]
    )
    with pytest.raises(ManifestError) as caught:
        read_manifest("-", io.StringIO(text))
    assert caught.value.problems == ["<stdin>:3: no 'input'"]
    options = SegmentOptions(inputs=[], manifest="-", overlay=True)
    jobs = jobs_from_manifest(options, io.StringIO("\n".join(text.splitlines()[:2]) + "\n"))
    first, second = (job.options for job in jobs)
    assert first.mask == clips / "c0.png" and first.mask_at == [f"4:{clips / 'c1.png'}"]
    assert first.direction == "both" and first.png and first.overlay  # the command line's --overlay stays
    assert second.boxes == ["10,10,20,20", "30,30,5,5"] and second.box_at == ["3:1,2,3,4", "5:1,1,9,9:2"]
    assert second.direction == "forward" and second.mask is None
    assert jobs[1].plan is not None and jobs[1].plan.output_dir == clips / "o1"
    assert jobs[0].plan is not None and jobs[0].plan.output_dir == clips / "c0_vos"


def test_csv_manifest_lists_with_semicolons(clips, tmp_path) -> None:
    manifest = tmp_path / "jobs.csv"
    manifest.write_text(f'input,box,box_at,mask_at\n{clips / "c0.mp4"},"1,2,30,30;40,2,20,20","5:1,1,9,9",\n')
    (job,) = read_manifest(manifest)
    assert job.boxes == ["1,2,30,30", "40,2,20,20"] and job.box_at == ["5:1,1,9,9"] and job.mask_at == []
    manifest.write_text("input,outptu\nc0.mp4,x\n")
    with pytest.raises(ManifestError) as caught:
        read_manifest(manifest)
    assert "jobs.csv:1:" in caught.value.problems[0] and "outptu" in caught.value.problems[0]


# --------------------------------------------------------------------------- collisions


@pytest.mark.parametrize("case", ["same_stem_two_folders", "two_extensions", "manifest"])
def test_output_collision_refused_with_both_names(clips, tmp_path, case) -> None:
    video = (clips / "c0.mp4").read_bytes()
    mask = str(clips / "c0.png")
    for name in ("a/ok.mp4", "b/ok.mp4", "ok.mp4", "ok.mkv"):
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_bytes(video)
    if case == "same_stem_two_folders":
        first, second = tmp_path / "a/ok.mp4", tmp_path / "b/ok.mp4"
        args = [str(first), str(second), "--mask", mask, "-o", str(tmp_path / "out")]
    elif case == "two_extensions":
        first, second = tmp_path / "ok.mp4", tmp_path / "ok.mkv"
        args = [str(first), str(second), "--mask", mask]
    else:
        first, second = tmp_path / "a/ok.mp4", tmp_path / "b/ok.mp4"
        manifest = tmp_path / "jobs.csv"
        manifest.write_text(f"input,mask,output\n{first},{mask},out/x\n{second},{mask},out/x\n")
        args = ["--manifest", str(manifest)]
    for extra in ([], ["--force"]):
        run = vosctl("segment", *args, *extra, "--png", "-q")
        assert run.returncode == 2, run.stderr
        lines = run.stderr.strip().splitlines()
        assert len(lines) == 1 and "collision" in lines[0], lines
        assert str(first) in lines[0] and str(second) in lines[0], lines
    assert not (tmp_path / "out").exists() and not (tmp_path / "ok_vos").exists()


def test_collision_rules(tmp_path) -> None:
    def plan(name: str, output: str) -> tuple[str, JobPlan]:
        return name, JobPlan(tmp_path / name, None, tmp_path / output, {"png": "masks"})

    assert find_collisions([plan("a.mp4", "a_vos"), plan("b.mp4", "b_vos")]) == []
    # an output inside another job's input (a frame folder) or around it, or nested outputs
    inside_input = find_collisions([plan("frames", "frames_vos"), plan("b.mp4", "frames/b_vos")])
    assert len(inside_input) == 1 and "frames" in inside_input[0] and "b.mp4" in inside_input[0]
    around_input = find_collisions([plan("a.mp4", "out"), plan("out/b.mp4", "b_vos")])
    assert len(around_input) == 1 and "holds the input of out/b.mp4" in around_input[0].replace(str(tmp_path) + "/", "")
    nested = find_collisions([plan("a.mp4", "out"), plan("b.mp4", "out/b_vos")])
    assert len(nested) == 1 and "inside the output of a.mp4" in nested[0]


# --------------------------------------------------------------------------- local workers


def test_workers_2_byte_identical_to_serial_and_json_lines(clips, tmp_path) -> None:
    common = [*inputs(clips), "--mask-pattern", "{dir}/{stem}.png", "--png", "--track-json", "--json"]
    serial = vosctl("segment", *common, "-o", str(tmp_path / "serial"))
    assert serial.returncode == 0, serial.stderr
    parallel = vosctl("segment", *common, "-o", str(tmp_path / "parallel"), "--workers", "2")
    assert parallel.returncode == 0, parallel.stderr
    assert mask_bytes(tmp_path / "serial") == mask_bytes(tmp_path / "parallel")
    assert len(mask_bytes(tmp_path / "serial")) == 3 * 8

    assert comparable(serial.stdout, tmp_path / "serial") == comparable(parallel.stdout, tmp_path / "parallel")
    assert not list(tmp_path.rglob(".*tmp*"))


CRASH_DIR = "VOSCTL_TEST_CRASH_DIR"


def crashing_job(task):
    """A worker job that dies (os._exit) when a marker file for its input says so."""
    crash_dir = Path(os.environ[CRASH_DIR])
    stem = task.plan.input_path.stem
    once = crash_dir / f"{stem}.once"
    if once.exists():
        once.unlink()
        os._exit(3)
    if (crash_dir / f"{stem}.always").exists():
        os._exit(3)
    return run_job_task(task)


def _crash_batch(clips: Path, tmp_path: Path, monkeypatch, backend) -> dict[str, object]:
    crash_dir = tmp_path / "crash"
    crash_dir.mkdir()
    (crash_dir / "c0.once").touch()  # dies on the first try, succeeds on the retry
    (crash_dir / "c1.always").touch()  # dies on the retry too: reported failed
    monkeypatch.setenv(CRASH_DIR, str(crash_dir))
    options = SegmentOptions(
        inputs=inputs(clips), mask_pattern="{dir}/{stem}.png", output=tmp_path / "out", png=True, quiet=True
    )
    events = {Path(e.job.name).stem: e for e in run_batch(options, backend=backend, job_fn=crashing_job)}
    assert set(events) == {"c0", "c1", "c2"}
    assert events["c0"].summary is not None and events["c0"].summary["frames"] == 8
    assert events["c2"].summary is not None
    assert events["c1"].summary is None and events["c1"].exit_code == 1 and "died" in (events["c1"].error or "")
    assert max(e.exit_code for e in events.values()) == 1
    assert not (crash_dir / "c0.once").exists(), "c0 was really started twice"
    assert (tmp_path / "out/c0_vos/masks/00007.png").is_file() and not (tmp_path / "out/c1_vos").exists()
    return events


def test_local_worker_death_retried_once_then_failed(clips, tmp_path, monkeypatch) -> None:
    _crash_batch(clips, tmp_path, monkeypatch, LocalBackend(2, threads=1))


def test_threads_are_split_between_workers_not_multiplied() -> None:
    from vosctl.jobs.pool import threads_per_worker

    assert [threads_per_worker(w, total=2) for w in (1, 2, 3)] == [2, 1, 1]
    assert threads_per_worker(2, total=8) == 4 and threads_per_worker(3, total=8) == 2


def swallowed_sigterm_job(folder: str) -> str:
    """A task whose worker gets SIGTERM while extension code swallows the handler's exception (round
    25 saw this); it goes on with a per-frame loop, as a segment job does, and keeps a temporary."""
    import time

    from test_signals import swallowed_sigterm

    from vosctl.jobs.signals import raise_if_interrupted

    temporary = Path(folder) / f".job-{os.getpid()}.tmp"
    temporary.touch()
    try:
        swallowed_sigterm()
        for _ in range(50):
            raise_if_interrupted()
            time.sleep(0.01)
        return "finished"
    finally:
        temporary.unlink()


def test_a_signalled_worker_removes_its_temporaries_even_when_the_signal_was_swallowed(tmp_path) -> None:
    """Workers run each task under graceful_termination: a SIGTERM (or Ctrl-C) unwinds the task,
    so its temporaries go, even when the handler's exception was lost; the worker then exits
    (retried once, then reported as failed) instead of being killed with its temporaries left."""
    results = dict(LocalBackend(1, threads=1).run(swallowed_sigterm_job, [str(tmp_path)]))
    assert isinstance(results[0], TaskFailed) and "died" in results[0].message
    assert not list(tmp_path.glob("*.tmp"))


def test_local_backend_reports_a_task_exception_and_goes_on() -> None:
    results = dict(LocalBackend(2, threads=1).run(int, ["1", "x", "3"]))
    assert results[0] == 1 and results[2] == 3
    assert isinstance(results[1], TaskFailed) and "ValueError" in results[1].message


# --------------------------------------------------------------------------- resume


def test_rerun_skips_complete_jobs_redoes_changed_and_force(clips, tmp_path) -> None:
    work = tmp_path / "work"
    work.mkdir()
    for i in range(3):
        (work / f"c{i}.mp4").write_bytes((clips / f"c{i}.mp4").read_bytes())
        (work / f"c{i}.png").write_bytes((clips / f"c{i}.png").read_bytes())
    manifest = work / "jobs.jsonl"
    manifest.write_text("".join(json.dumps({"input": f"c{i}.mp4", "mask": f"c{i}.png"}) + "\n" for i in range(3)))
    first = vosctl("segment", "--manifest", str(manifest), "--png", "--json")
    assert first.returncode == 0, first.stderr
    assert sorted(s["line"] for s in json_lines(first.stdout)) == [1, 2, 3]
    stamp = {i: (work / f"c{i}_vos/masks/00000.png").stat().st_mtime_ns for i in range(3)}

    again = vosctl("segment", "--manifest", str(manifest), "--png", "--json")
    assert again.returncode == 0, again.stderr
    summaries = json_lines(again.stdout)
    assert len(summaries) == 3 and all(s["skipped"] for s in summaries)
    assert sorted(json.dumps(s | {"skipped": True}, sort_keys=True) for s in json_lines(first.stdout)) == sorted(
        json.dumps(s, sort_keys=True) for s in summaries
    )
    assert {i: (work / f"c{i}_vos/masks/00000.png").stat().st_mtime_ns for i in range(3)} == stamp

    # A job whose input changed is redone (its old outputs are vosctl's own); the others are skipped.
    # (In this process from here on: the model is loaded once for the whole test.)
    (work / "c1.mp4").write_bytes((clips / "c2.mp4").read_bytes())
    redone = [e for e in in_process(manifest) if not e.skipped]
    assert [e.summary["line"] for e in redone if e.summary] == [2] and len(redone) == 1
    assert (work / "c0_vos/masks/00000.png").stat().st_mtime_ns == stamp[0]

    # Outputs without a completion marker are not vosctl's to replace: refused unless --force.
    (work / "c0_vos" / ".vosctl-job.json").unlink()
    refused = vosctl("segment", "--manifest", str(manifest), "--png", "--json")
    assert refused.returncode == 2 and "jobs.jsonl:1:" in refused.stderr and "already exists" in refused.stderr
    forced = in_process(manifest, force=True)
    assert len(forced) == 3 and not any(e.skipped or e.error for e in forced)
    assert (work / "c0_vos" / ".vosctl-job.json").is_file()


def in_process(manifest: Path, force: bool = False) -> list:
    options = SegmentOptions(inputs=[], manifest=str(manifest), png=True, force=force, quiet=True)
    return list(run_batch(options))


# --------------------------------------------------------------------------- Ray


@pytest.mark.slow
def test_ray_local_same_masks_and_json_lines_as_serial(clips, tmp_path) -> None:
    pytest.importorskip("ray")
    common = [*inputs(clips), "--mask-pattern", "{dir}/{stem}.png", "--png", "--json"]
    serial = vosctl("segment", *common, "-o", str(tmp_path / "serial"))
    assert serial.returncode == 0, serial.stderr
    on_ray = vosctl("segment", *common, "-o", str(tmp_path / "ray"), "--ray", "local", "--workers", "2")
    assert on_ray.returncode == 0, on_ray.stderr
    assert mask_bytes(tmp_path / "serial") == mask_bytes(tmp_path / "ray")

    assert comparable(serial.stdout, tmp_path / "serial") == comparable(on_ray.stdout, tmp_path / "ray")


@pytest.mark.slow
def test_ray_worker_death_retried_once_then_failed(clips, tmp_path, monkeypatch) -> None:
    ray = pytest.importorskip("ray")
    from vosctl.jobs.ray_backend import RayBackend

    # Ray workers must import this module (crashing_job is pickled by reference).
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(ROOT), str(TESTS)]))
    _crash_batch(clips, tmp_path, monkeypatch, RayBackend("local", local_cpus=2))
    assert not ray.is_initialized(), "a local Ray started for the batch is shut down"


def test_ray_missing_is_one_line_install_hint(clips, tmp_path) -> None:
    blocker = tmp_path / "noray"
    blocker.mkdir()
    (blocker / "ray.py").write_text("raise ImportError('no ray here')\n")
    run = subprocess.run(
        [sys.executable, "-m", "vosctl.cli", "segment", *inputs(clips)[:1], "--mask", str(clips / "c0.png")]
        + ["-o", str(tmp_path / "o"), "--ray", "auto"],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": os.pathsep.join([str(blocker), str(ROOT)])},
        timeout=300,
    )
    assert run.returncode == 2
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1 and "pip install 'vosctl[ray]'" in lines[0], lines
    assert not (tmp_path / "o").exists()


# --------------------------------------------------------------------------- benchmark --davis --workers


def test_benchmark_workers_one_sequence_per_task_same_figures(tmp_path) -> None:
    from test_benchmark_cli import FRAMES, make_davis, square_labels

    from vosctl.eval.benchmark import BenchmarkOptions, run_benchmark

    sequences = {
        name: [square_labels(t, [(1, x, 12)], shape=(96, 128)) for t in range(FRAMES)]
        for name, x in (("walk", 8), ("run", 40), ("jump", 20))
    }
    root = make_davis(tmp_path / "DAVIS", "2016", sequences, list(sequences))
    serial = run_benchmark(BenchmarkOptions(root, "2016", results=tmp_path / "serial", device="cpu"))
    parallel = run_benchmark(BenchmarkOptions(root, "2016", results=tmp_path / "parallel", device="cpu", workers=2))
    assert parallel.sequences == serial.sequences == list(sequences)  # sequence order, not completion order
    assert parallel.to_dict()["sequences"] == serial.to_dict()["sequences"]
    assert mask_bytes(tmp_path / "serial") == mask_bytes(tmp_path / "parallel")
    report = parallel.to_dict()
    assert report["workers"] == 2 and report["fps_aggregate"] > 0 and report["frames_segmented"] == 3 * FRAMES
    assert serial.to_dict()["fps_aggregate"] is None
