"""Model checkpoints: find by name or path, load with a clear error, export compactly.

A shipped checkpoint is a ``torch.save`` dict:
``{"format": "vosctl-siamdmn", "format_version": 1, "network": NetworkConfig fields,
"state_dict": fp16 tensors, "metadata": {...training facts...}}``. It carries all weights: the
ImageNet file is only a training-time initialisation.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from vosctl.errors import CheckpointError
from vosctl.model.network import NetworkConfig, SiamDMN

FORMAT = "vosctl-siamdmn"
FORMAT_VERSION = 1
MODELS_DIR_ENV = "VOSCTL_MODELS"


def models_dirs() -> list[Path]:
    """Where model names are looked up: $VOSCTL_MODELS, then the project's ``models/`` folder."""
    dirs = []
    if os.environ.get(MODELS_DIR_ENV):
        dirs.append(Path(os.environ[MODELS_DIR_ENV]))
    dirs.append(Path(__file__).resolve().parents[2] / "models")
    return dirs


def resolve_checkpoint(name_or_path: str | os.PathLike[str]) -> Path:
    """A path that exists, or ``<models dir>/<name>.pt``; CheckpointError naming what was tried."""
    candidate = Path(name_or_path).expanduser()
    if candidate.is_file():
        return candidate
    text = str(name_or_path)
    if os.sep not in text and not text.endswith(".pt"):
        for folder in models_dirs():
            path = folder / f"{text}.pt"
            if path.is_file():
                return path
        tried = ", ".join(str(d / f"{text}.pt") for d in models_dirs())
        raise CheckpointError(f"model '{text}' not found (looked for {tried})")
    raise CheckpointError(f"checkpoint {text} does not exist")


def export_state(model: SiamDMN, metadata: dict[str, Any], half: bool = True) -> dict[str, Any]:
    state = {k: (v.half() if half and v.is_floating_point() else v).clone() for k, v in model.state_dict().items()}
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "network": model.config.to_dict(),
        "state_dict": state,
        "metadata": metadata,
    }


def save_checkpoint(model: SiamDMN, path: str | os.PathLike[str], metadata: dict[str, Any], half: bool = True) -> Path:
    """Write an inference checkpoint atomically (temp name, then rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        torch.save(export_state(model, metadata, half), tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def load_checkpoint(
    name_or_path: str | os.PathLike[str], device: str | torch.device = "cpu"
) -> tuple[SiamDMN, dict[str, Any]]:
    """Build the network from a checkpoint; returns (model in eval mode, metadata)."""
    path = resolve_checkpoint(name_or_path)
    try:
        # TorchVersion (a str subclass) appears in the metadata of early checkpoints.
        with torch.serialization.safe_globals([torch.torch_version.TorchVersion]):
            blob = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises many types for a corrupt file
        raise CheckpointError(f"checkpoint {path} cannot be read ({type(error).__name__})") from error
    if not isinstance(blob, dict) or blob.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a vosctl SiamDMN checkpoint")
    if blob.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(
            f"{path} has checkpoint format {blob.get('format_version')}, this vosctl reads {FORMAT_VERSION}"
        )
    try:
        config = NetworkConfig(**blob["network"])
        model = SiamDMN(config)
        state = {k: v.float() if v.is_floating_point() else v for k, v in blob["state_dict"].items()}
        model.load_state_dict(state, strict=True)
    except (TypeError, KeyError, RuntimeError) as error:
        raise CheckpointError(f"{path} does not match this vosctl's network ({str(error).splitlines()[0]})") from error
    model.eval().to(device)
    metadata = dict(blob.get("metadata", {}))
    metadata.setdefault("name", path.stem)
    metadata["path"] = str(path)
    return model, metadata


def average_checkpoints(names_or_paths: list[str | os.PathLike[str]]) -> tuple[SiamDMN, dict[str, Any]]:
    """The uniform average of several checkpoints' weights (a "model soup", Wortsman et al. 2022).

    Meant for models fine-tuned from one parent (one basin of the loss), where the average is
    usually at least as good as its members and less sensitive to which run happened to stop where.
    All must share the architecture; integer buffers (BN batch counters) are taken from the first.
    Returns the model (eval) and metadata naming the members.
    """
    if not names_or_paths:
        raise CheckpointError("no checkpoints to average")
    models = [load_checkpoint(name) for name in names_or_paths]
    first, _ = models[0]
    for (model, _), name in zip(models[1:], names_or_paths[1:]):
        if model.config != first.config:
            raise CheckpointError(f"{name} has another architecture than {names_or_paths[0]}; cannot average")
    states = [model.state_dict() for model, _ in models]
    averaged = {
        key: torch.stack([state[key].float() for state in states]).mean(0) if value.is_floating_point() else value
        for key, value in states[0].items()
    }
    soup = SiamDMN(first.config)
    soup.load_state_dict(averaged, strict=True)
    members = [{"name": meta.get("name"), "path": meta.get("path"), "steps": meta.get("steps")} for _, meta in models]
    return soup.eval(), {"weights": f"uniform average of {len(models)} checkpoints", "members": members}
