"""Run ``vosctl`` in-process (typer's CliRunner) with one model loaded for the whole test session.

A subprocess pays for Python, torch and the checkpoint on every call (seconds on a busy 2-core
machine); most reliability and fuzz cases only need the CLI's behaviour, so they run here. A few
cases that need a real process (signals, resource limits, another user) use ``subprocess``.
"""

from __future__ import annotations

import functools
import importlib.util
import traceback
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import pytest
from typer.testing import CliRunner

from vosctl.cli import app


@dataclass
class Outcome:
    code: int
    stdout: str
    stderr: str
    exception: BaseException | None  # anything but SystemExit escaping the CLI: a crash

    @property
    def error_lines(self) -> list[str]:
        return [line for line in self.stderr.splitlines() if line.strip()]

    def crash(self) -> str:
        if self.exception is None:
            return ""
        return "".join(traceback.format_exception(self.exception))


@functools.cache
def _shared_model():
    """The default model, loaded once (directly: ``from_pretrained`` may be patched by ``cli``)."""
    from vosctl.model.checkpoint import load_checkpoint
    from vosctl.tracker import Segmenter

    model, metadata = load_checkpoint("default")
    segmenter = Segmenter(model, device="cpu", model_name=str(metadata.get("name", "default")))
    segmenter.metadata = metadata
    return segmenter


@pytest.fixture
def cli(monkeypatch):
    """``cli(*args) -> Outcome``: the real CLI in-process; --model default reuses one loaded model."""
    from vosctl.tracker import Segmenter

    original = Segmenter.from_pretrained.__func__

    def cached(cls, name_or_path="default", *args, **kwargs):
        # Reuse the one model unless the run asks for a different tracker (e.g. --full-frame);
        # device/threads make no difference to what the CLI writes.
        config = kwargs.get("config")
        if name_or_path == "default" and not args and (config is None or config == type(config)()):
            return _shared_model()
        return original(cls, name_or_path, *args, **kwargs)

    monkeypatch.setattr(Segmenter, "from_pretrained", classmethod(cached))
    runner = CliRunner()

    def run(*args: str | Path, stdin: str | None = None) -> Outcome:
        result = runner.invoke(app, [str(a) for a in args], input=stdin, catch_exceptions=True)
        exception = None if isinstance(result.exception, SystemExit) else result.exception
        return Outcome(result.exit_code, result.stdout, result.stderr, exception)

    return run


def leftovers(folder: Path, keep: set[Path] = frozenset()) -> list[Path]:
    """Everything under ``folder`` but the given inputs (and their parent folders)."""
    kept = {p.resolve() for p in keep}
    parents = {q for p in kept for q in p.parents}
    return sorted(p for p in folder.rglob("*") if p.resolve() not in kept and p.resolve() not in parents)


REPO = Path(__file__).resolve().parents[1]


def load_script(relative_path: str) -> ModuleType:
    """A repository script (``benchmarks/...``, ``scripts/...``) imported as a module, to call its functions."""
    path = REPO / relative_path
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module
