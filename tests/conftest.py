import sys
from pathlib import Path

# Test helpers (scenes.py, synth.py) are plain modules beside the tests.
sys.path.insert(0, str(Path(__file__).parent))

# `cli` fixture: the CLI in-process with one shared model (tests/inproc.py).
from inproc import cli  # noqa: E402, F401
