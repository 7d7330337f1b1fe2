"""`vosctl --help` / `--version` and `import vosctl.io` stay light: no torch (and no PyAV for io).

Each check runs in a fresh interpreter, because this test process may already have imported torch.
"""

from __future__ import annotations

import subprocess
import sys

from vosctl import __version__

CHECK = """
import sys
from typer.testing import CliRunner
from vosctl.cli import app

runner = CliRunner()
for args in (["--help"], ["--version"], ["segment", "--help"]):
    result = runner.invoke(app, args)
    assert result.exit_code == 0, (args, result.output)
    print(result.output)
heavy = sorted(name for name in ("torch", "av") if name in sys.modules)
assert not heavy, f"CLI help/version imported {heavy}"
"""


def _python(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)


def test_help_and_version_do_not_import_torch() -> None:
    result = _python(CHECK)
    assert result.returncode == 0, result.stderr
    assert f"vosctl {__version__}" in result.stdout
    assert "segment" in result.stdout and "--mask" in result.stdout


def test_version_via_module_entry_point() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "vosctl.cli", "--version"], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"vosctl {__version__}"


def test_importing_io_is_light() -> None:
    result = _python("import sys, vosctl.io; assert 'torch' not in sys.modules and 'av' not in sys.modules")
    assert result.returncode == 0, result.stderr
