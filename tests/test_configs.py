"""The shipped training configs: each one loads, builds its network and training pairs, and keeps
the model card's held-out sequences out of training. A GPU session is lent for minutes, so a typo
or a missing parent checkpoint must fail here, not on the device."""

from __future__ import annotations

from pathlib import Path

import pytest

from vosctl.model.network import NetworkConfig
from vosctl.train.loop import TrainConfig, pair_config_for

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = sorted((ROOT / "configs").glob("*.json"))
# The held-out sequences of models/README.md: never trained on, by any shipped config.
HELD_OUT = {"bear", "car-turn", "flamingo", "lucia", "paragliding", "stroller"}


def test_there_are_configs() -> None:
    assert len(CONFIGS) >= 10


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_config_loads_and_keeps_the_held_out_sequences_out(path: Path) -> None:
    config = TrainConfig.from_json(path)
    network = NetworkConfig(**config.network)
    pair_config_for(network, config.pairs)  # unknown pair options raise here
    assert set(config.heldout) == HELD_OUT
    assert config.steps > 0 and config.batch_size > 0
    if config.init_checkpoint:  # the parent model ships in models/
        parent = Path(config.init_checkpoint)
        assert parent.parent == ROOT / "models" and parent.is_file(), parent
