"""``--set KEY=VALUE`` (vosctl.overrides) and the settings' range checks, without a network."""

from __future__ import annotations

import pytest

from vosctl.errors import InputError
from vosctl.eval.benchmark import BenchmarkOptions, _segmenter_config
from vosctl.jobs.segment import SegmentOptions, segmenter_config
from vosctl.memory import MemoryConfig
from vosctl.overrides import apply_overrides, setting_names
from vosctl.tracker import SegmenterConfig


def test_values_are_parsed_as_each_settings_type() -> None:
    base = SegmenterConfig()
    config = apply_overrides(
        base,
        [
            "memory.trusted_weight=0.75",  # float, in a group
            "memory.bank_size=4",  # int
            "cap_search_to_frame=false",  # bool
            "search_size=320",  # int | None
            "presence.reacquire_area_range=0.5, 3",  # tuple[float, float]
            "precision=fp32",  # str
            "memory.bank_size=3",  # a later item wins
        ],
    )
    assert config.memory == MemoryConfig(bank_size=3, trusted_weight=0.75)
    assert config.cap_search_to_frame is False and config.search_size == 320 and config.precision == "fp32"
    assert config.presence.reacquire_area_range == (0.5, 3.0)
    assert apply_overrides(config, ["search_size=none"]).search_size is None
    assert base == SegmenterConfig()  # the input config is never changed


@pytest.mark.parametrize(
    "item, message",
    [
        ("memory.trusted_weight", "expected KEY=VALUE"),
        ("=3", "expected KEY=VALUE"),
        ("windw_influence=0.2", "unknown setting; one of: context, window_influence"),
        ("memory.nope=1", "one of: memory.bank_size, memory.trusted_weight"),
        ("memory=1", "memory is a group"),
        ("mask_threshold.x=1", "mask_threshold is a single setting"),
        ("memory.bank_size=2.5", "expected a whole number"),
        ("mask_threshold=high", "expected a finite number"),
        ("mask_threshold=nan", "expected a finite number"),
        ("full_frame=maybe", "expected true or false"),
        ("presence.reacquire_area_range=2", "expected 2 comma-separated values"),
        ("memory.trusted_weight=1.5", "memory.trusted_weight must be in [0, 1], got 1.5"),
        ("mask_threshold=1", "mask_threshold must be between 0 and 1"),
        ("memory.update_every=0", "memory.update_every must be >= 1"),
        ("presence.reacquire_area_range=4,1", "0 <= LOW <= HIGH"),
    ],
)
def test_bad_settings_are_one_line_input_errors(item: str, message: str) -> None:
    with pytest.raises(InputError) as error:
        apply_overrides(SegmenterConfig(), [item])
    assert message in str(error.value) and "\n" not in str(error.value)


def test_every_setting_name_can_be_set_to_its_own_value() -> None:
    """The names the help lists are exactly the settable ones, and each parses its own default."""
    config = SegmenterConfig()
    names = setting_names(config)
    assert "memory.trusted_weight" in names and "presence.lost_patience" in names and "memory" not in names
    for name in names:
        value = config
        for part in name.split("."):
            value = getattr(value, part)
        text = ",".join(map(str, value)) if isinstance(value, tuple) else str(value)
        assert apply_overrides(config, [f"{name}={text}"]) == config, name


def test_the_api_checks_ranges_too() -> None:
    with pytest.raises(InputError, match="window_influence"):
        SegmenterConfig(window_influence=2.0)
    with pytest.raises(InputError, match="memory.bank_size"):
        MemoryConfig(bank_size=-1)


def test_segment_and_benchmark_options_carry_the_settings() -> None:
    settings = ["memory.trusted_weight=0.75", "window_influence=0.2"]
    segment = segmenter_config(SegmentOptions(inputs=[], search_size=256, settings=settings))
    assert segment.memory.trusted_weight == 0.75 and segment.window_influence == 0.2 and segment.search_size == 256
    bench = _segmenter_config(BenchmarkOptions(davis_root=".", settings=settings))  # type: ignore[arg-type]
    assert bench.memory.trusted_weight == 0.75 and bench.window_influence == 0.2
