"""Network shapes and gradients, a tiny training run whose loss must fall, checkpoint round trips."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
import torch

from tests.synth import texture
from vosctl.errors import CheckpointError, InputError
from vosctl.model.backbone import MobileNetV2Features
from vosctl.model.checkpoint import load_checkpoint, resolve_checkpoint, save_checkpoint
from vosctl.model.network import NetworkConfig, SiamDMN

SMALL = NetworkConfig(template_size=64, search_size=128)


def _inputs(n: int, cfg: NetworkConfig) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(0)
    template = torch.rand(n, 3, cfg.template_size, cfg.template_size, generator=g) * 255
    template_mask = (torch.rand(n, 1, cfg.template_size, cfg.template_size, generator=g) > 0.5).float()
    search = torch.rand(n, 3, cfg.search_size, cfg.search_size, generator=g) * 255
    prior = (torch.rand(n, 1, cfg.search_size, cfg.search_size, generator=g) > 0.5).float()
    return template, template_mask, search, prior


def test_backbone_keys_match_torchvision_layout() -> None:
    keys = MobileNetV2Features().state_dict().keys()
    assert "features.0.0.weight" in keys
    assert "features.1.conv.0.0.weight" in keys  # expand ratio 1: no expansion layer
    assert "features.2.conv.0.0.weight" in keys and "features.2.conv.3.running_var" in keys
    assert "features.13.conv.2.weight" in keys and "features.14.conv.0.0.weight" not in keys


def test_shapes_and_gradients() -> None:
    model = SiamDMN(SMALL)
    template, template_mask, search, prior = _inputs(3, SMALL)
    out = model(template, template_mask, search, prior)
    grid = SMALL.search_size // 16
    assert out.score.shape == (3, 1, grid, grid)
    assert out.mask_logits.shape == (3, 1, SMALL.search_size, SMALL.search_size)
    assert out.location.shape == (3, 2)
    (out.mask_logits.mean() + out.score.mean()).backward()
    for name in ("backbone.features.0.0.weight", "neck.0.weight", "controller.weight", "mask_tower.2.weight"):
        grad = dict(model.named_parameters())[name].grad
        assert grad is not None and torch.isfinite(grad).all() and grad.abs().sum() > 0, name


def test_dynamic_kernels_differ_per_location() -> None:
    """The mask depends on where the kernel is taken (relative coordinates), as the method needs."""
    torch.manual_seed(0)
    model = SiamDMN(SMALL).eval()
    template, template_mask, search, prior = _inputs(1, SMALL)
    with torch.no_grad():
        emb = model.embed_template(template, template_mask)
        a = model.forward_search(search, emb, prior, location=torch.tensor([[1, 1]])).mask_logits
        b = model.forward_search(search, emb, prior, location=torch.tensor([[6, 6]])).mask_logits
    assert not torch.allclose(a, b)


def test_tiny_training_run_loss_falls(tmp_path: Path) -> None:
    """A few steps on synthetic shapes only: the loss must go down."""
    from vosctl.train.loop import TrainConfig, train

    config = TrainConfig(
        run_dir=str(tmp_path / "run"),
        source_weights=(0.0, 0.0, 1.0),
        batch_size=4,
        steps=40,
        epoch_steps=40,
        warmup_steps=2,
        lr=1e-3,
        backbone_lr_scale=0.5,
        bf16=False,
        network={"template_size": 64, "search_size": 128},
        pairs={"negative_prob": 0.0},
    )
    torch.set_num_threads(2)
    model_path = train(config, device="cpu", resume=False)
    assert model_path.is_file()
    # Compare the loss on fixed batches before and after training.
    from vosctl.train.data import PairConfig, PairSampler
    from vosctl.train.loop import compute_losses

    sampler = PairSampler(PairConfig(template_size=64, search_size=128, negative_prob=0.0), None, None, (0, 0, 1))
    fresh = SiamDMN(NetworkConfig(template_size=64, search_size=128))
    trained, _ = load_checkpoint(model_path)

    def mean_losses(model: SiamDMN) -> tuple[float, float]:
        """(total loss, mask loss) on fixed batches."""
        model.eval()
        totals, masks = [], []
        with torch.no_grad():
            for seed in range(3):
                rng = np.random.default_rng([123, seed])
                batch = sampler.batch(rng, 8)
                loss, stats = compute_losses(model, batch, torch.device("cpu"), config.loss_weights, rng)
                totals.append(float(loss))
                masks.append(stats["bce"] + stats["dice"])
        return float(np.mean(totals)), float(np.mean(masks))

    # 40 tiny steps move the mask losses clearly; the focal score loss (one positive cell per
    # sample) needs longer, so the total is only required to fall.
    trained_total, trained_mask = mean_losses(trained)
    fresh_total, fresh_mask = mean_losses(fresh)
    assert trained_mask < 0.8 * fresh_mask
    assert trained_total < fresh_total


def test_checkpoint_round_trip_identical_outputs(tmp_path: Path) -> None:
    torch.manual_seed(1)
    model = SiamDMN(SMALL).eval()
    # Round weights to fp16 first so the fp16 export is exact.
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(p.half().float())
    path = save_checkpoint(model, tmp_path / "m.pt", {"name": "unit"})
    loaded, meta = load_checkpoint(path)
    assert meta["name"] == "unit"
    inputs = _inputs(2, SMALL)
    with torch.no_grad():
        a = model(*inputs, location=torch.tensor([[3, 3], [4, 2]]))
        b = loaded(*inputs, location=torch.tensor([[3, 3], [4, 2]]))
    assert torch.equal(a.mask_logits, b.mask_logits) and torch.equal(a.score, b.score)


def test_missing_and_incompatible_checkpoints(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="not found"):
        resolve_checkpoint("no-such-model")
    with pytest.raises(CheckpointError, match="does not exist"):
        resolve_checkpoint(str(tmp_path / "nothing.pt"))
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="cannot be read"):
        load_checkpoint(bad)
    other = tmp_path / "other.pt"
    torch.save({"weights": torch.zeros(1)}, other)
    with pytest.raises(CheckpointError, match="not a vosctl"):
        load_checkpoint(other)
    model = SiamDMN(SMALL)
    blob_path = save_checkpoint(model, tmp_path / "v.pt", {})
    blob = torch.load(blob_path, weights_only=True)
    blob["network"]["mask_channels"] = 4  # architecture no longer matches the weights
    torch.save(blob, blob_path)
    with pytest.raises(CheckpointError, match="does not match"):
        load_checkpoint(blob_path)


def test_bn_fusion_keeps_outputs_and_leaves_original_untouched() -> None:
    from vosctl.model.network import fuse_for_inference

    torch.manual_seed(2)
    model = SiamDMN(SMALL).eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    fused = fuse_for_inference(model)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in fused.modules())
    inputs = _inputs(2, SMALL)
    with torch.no_grad():
        a = model(*inputs, location=torch.tensor([[2, 2], [5, 5]]))
        b = fused(*inputs, location=torch.tensor([[2, 2], [5, 5]]))
    assert torch.allclose(a.mask_logits, b.mask_logits, atol=1e-3)
    assert torch.allclose(a.score, b.score, atol=1e-3)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def _tiny_run(tmp_path: Path, run: str, steps: int, workers: int = 0, **fields: Any):
    """A training config small enough for a test: synthetic pairs only, 64/128 px, batch 2."""
    from vosctl.train.loop import TrainConfig

    defaults: dict[str, Any] = {
        "source_weights": (0.0, 0.0, 1.0),
        "batch_size": 2,
        "epoch_steps": 100,
        "warmup_steps": 2,
        "bf16": False,
        "network": {"template_size": 64, "search_size": 128},
        "ema_decay": 0.9,
    }
    return TrainConfig(run_dir=str(tmp_path / run), steps=steps, loader_workers=workers, **{**defaults, **fields})


def test_training_is_seeded_and_resumes_exactly(tmp_path: Path) -> None:
    """Stopping at step 3 and resuming to 5 gives the same weights (and weight average) as 5 steps in one go.

    The resumed run takes its batches from DataLoader worker processes, the straight one from the
    background thread: the data of a step must not depend on who builds it.
    """
    from vosctl.train.loop import train

    def config(run: str, steps: int, workers: int = 0):
        return _tiny_run(tmp_path, run, steps, workers, pairs={"partial_prior_prob": 0.5})

    train(config("straight", 5), device="cpu", resume=False)
    train(config("resumed", 5, workers=2), device="cpu", resume=False, stop_at=3)
    assert torch.load(tmp_path / "resumed" / "last.pt", weights_only=False)["step"] == 3
    train(config("resumed", 5, workers=2), device="cpu", resume=True)
    straight = torch.load(tmp_path / "straight" / "last.pt", weights_only=False)
    resumed = torch.load(tmp_path / "resumed" / "last.pt", weights_only=False)
    assert straight["step"] == resumed["step"] == 5
    for key, value in straight["model"].items():
        assert torch.equal(value, resumed["model"][key]), key
    for key, value in straight["ema"].items():
        assert torch.equal(value, resumed["ema"][key]), key
    # model.pt carries the average, model_raw.pt the last step's weights.
    from vosctl.model.checkpoint import load_checkpoint

    averaged, meta = load_checkpoint(str(tmp_path / "straight" / "model.pt"))
    raw, raw_meta = load_checkpoint(str(tmp_path / "straight" / "model_raw.pt"))
    assert meta["weights"] == "EMA 0.9" and raw_meta["weights"] == "last step"
    key = next(k for k in straight["ema"] if k.endswith("weight"))
    assert not torch.equal(averaged.state_dict()[key].float(), raw.state_dict()[key].float())


def test_steps_within_budget_fits_the_time_left_between_the_warmup_and_the_config() -> None:
    from vosctl.train.loop import steps_within_budget

    assert steps_within_budget(100, 6000, 0.1, 300.0, safety=1.0) == 3100
    assert steps_within_budget(100, 6000, 0.1, 330.1) == 3100  # the pace taken 10 % slower by default
    assert steps_within_budget(100, 2000, 0.1, 300.0) == 2000  # the config's steps are the most
    assert steps_within_budget(100, 6000, 0.1, -5.0) == 100  # late: the warm-up already done, no more
    assert steps_within_budget(100, 6000, 0.0, 1.0) == 6000


def test_a_deadline_sets_the_steps_at_the_end_of_the_warmup_exactly_as_configured(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A run given a deadline times its warm-up's second half, then takes the steps that fit; it is bit
    for bit the run configured with those steps: the cosine after the warm-up follows the new count."""
    import json
    import time

    from vosctl.train import loop
    from vosctl.train.loop import read_log, train

    def config(run: str, steps: int):
        return _tiny_run(tmp_path, run, steps, warmup_steps=4)

    def last(run: str) -> dict:
        return torch.load(tmp_path / run / "last.pt", weights_only=False)

    def calibrated(run: str) -> list[int]:
        return [e["steps"] for e in read_log(tmp_path / run) if e["event"] == "calibrated"]

    # A deadline already past: nothing fits after the warm-up, so the run stops there.
    train(config("late", 40), device="cpu", resume=False, deadline=time.monotonic())
    assert calibrated("late") == [4] and last("late")["step"] == 4
    assert json.loads((tmp_path / "late" / "config.json").read_text())["steps"] == 4
    # The timing decides 7 steps (fixed here: timings are not for tests); 3 follow the warm-up.
    with monkeypatch.context() as patch:
        patch.setattr(loop, "steps_within_budget", lambda *args: 7)
        train(config("cut", 40), device="cpu", resume=False, deadline=time.monotonic() + 3600)
    train(config("seven", 7), device="cpu", resume=False)
    assert calibrated("cut") == [7]
    # Calibrated for 40 steps but past its deadline: it stops at once and exports, step 4's weights.
    with monkeypatch.context() as patch:
        patch.setattr(loop, "steps_within_budget", lambda *args: 40)
        train(config("slow", 40), device="cpu", resume=False, deadline=time.monotonic())
    assert calibrated("slow") == [40] and last("slow")["step"] == 4
    assert (tmp_path / "slow" / "model.pt").exists()
    cut, seven = last("cut"), last("seven")
    assert cut["step"] == seven["step"] == 7
    for part in ("model", "ema"):
        for key, value in seven[part].items():
            assert torch.equal(value, cut[part][key]), (part, key)


def test_a_narrower_mask_path_starts_from_the_parents_leading_channels() -> None:
    """fpn_channels 16 under a 32-channel parent: same-shape tensors copied exactly, narrower ones the
    parent's leading slices (consistent from layer to layer), new layers left as initialised, and a
    wider layer refused."""
    import dataclasses

    from vosctl.train.loop import load_parent_weights

    torch.manual_seed(4)
    parent_cfg = NetworkConfig(template_size=64, search_size=128, fpn_channels=32, mask_stride=2, presence_head=True)
    parent = SiamDMN(parent_cfg).state_dict()
    child = SiamDMN(dataclasses.replace(parent_cfg, fpn_channels=16, fine_prototype=True))
    new_keys, narrowed = load_parent_weights(child, parent, parent_cfg)
    state = child.state_dict()
    assert sorted(new_keys) == ["fine_prototype.bias", "fine_prototype.weight"]
    assert "lateral8.weight" in narrowed and "mask_tower.0.0.weight" in narrowed
    assert not any(k.startswith(("backbone.", "neck.", "head.")) for k in narrowed)
    tower = "mask_tower.0.0.weight"  # input: 16 FPN channels, then the prior (the parent's channel 32)
    for key, value in state.items():
        if key in new_keys or key == tower:
            continue
        expected = parent[key][tuple(slice(0, n) for n in value.shape)]
        assert torch.equal(value, expected.to(value.dtype)), key
    assert state[tower].shape[:2] == (16, 17)
    assert torch.equal(state[tower][:, :16], parent[tower][:16, :16])
    assert torch.equal(state[tower][:, 16], parent[tower][:16, 32])
    wide = SiamDMN(dataclasses.replace(parent_cfg, fpn_channels=48))
    with pytest.raises(ValueError, match="only the same shape or a narrower one"):
        load_parent_weights(wide, parent, parent_cfg)


def test_corrupt_prior_makes_tracker_like_errors() -> None:
    """Prior corruption removes part of the object, drops a detached part, or adds a blob; never a no-op on average."""
    import cv2

    from vosctl.train.data import corrupt_prior

    prior = np.zeros((64, 64), np.float32)
    cv2.circle(prior, (20, 20), 10, 1, -1)
    cv2.circle(prior, (46, 46), 5, 1, -1)
    rng = np.random.default_rng(0)
    outcomes = [corrupt_prior(rng, prior) for _ in range(60)]
    areas = np.array([o.sum() for o in outcomes])
    assert all(set(np.unique(o)) <= {0.0, 1.0} for o in outcomes)
    assert (areas < prior.sum() * 0.9).mean() > 0.5  # mostly parts removed
    assert (areas > prior.sum()).any()  # sometimes a spurious blob
    main_whole = prior[10:31, 10:31].sum()
    dropped_part = [o for o in outcomes if o[46, 46] == 0 and o[10:31, 10:31].sum() == main_whole]
    assert dropped_part  # the detached small part lost, the main part whole
    assert np.array_equal(corrupt_prior(rng, np.zeros((64, 64), np.float32)), np.zeros((64, 64), np.float32))


def _red_square_scene() -> tuple[np.ndarray, np.ndarray]:
    """A 320x240 grey frame with one red 40x40 object and its mask (look-alike sampling tests)."""
    image = np.full((240, 320, 3), 40, np.uint8)
    mask = np.zeros((240, 320), np.uint8)
    mask[100:140, 140:180] = 1
    image[mask > 0] = (230, 30, 30)
    return image, mask


def _lookalike_sampler(**pairs: float):
    """A synthetic-only PairSampler at test size with a look-alike in every pair (plus ``pairs``)."""
    from vosctl.train.data import PairConfig, PairSampler

    cfg = PairConfig(template_size=64, search_size=128, lookalike_prob=1.0, compress_prob=0.0, **pairs)
    return PairSampler(cfg, None, None, (0.0, 0.0, 1.0))


def test_lookalike_flock_pastes_several_copies_left_out_of_the_mask() -> None:
    """lookalike_max > 1 pastes up to that many copies of the target; none of them joins the mask."""
    image, mask = _red_square_scene()

    def copies_seen(lookalike_max: int) -> float:
        sampler = _lookalike_sampler(lookalike_max=lookalike_max)
        red_outside = []
        for seed in range(24):
            sample = sampler._make_sample(np.random.default_rng(seed), image, mask, image.copy(), mask, mask)
            assert sample is not None
            rgb = sample.search.astype(np.int32)
            red = (rgb[..., 0] - rgb[..., 1] > 80) & (rgb[..., 0] - rgb[..., 2] > 80)  # robust to recolouring
            # The mask stays the target: (almost) every labelled pixel is red (edges are resampled).
            labelled = sample.search_mask > 0.5
            assert (labelled & ~red).sum() <= 0.05 * labelled.sum(), "the mask covers non-target pixels"
            red_outside.append(float((red & (sample.search_mask < 0.5)).sum()) / max(1.0, sample.search_mask.sum()))
        return float(np.mean(red_outside))

    one, flock = copies_seen(1), copies_seen(3)
    assert one > 0.3  # one copy: about one more object's worth of look-alike pixels
    assert flock > 1.3 * one


def test_exact_lookalikes_keep_the_targets_colours() -> None:
    """lookalike_exact_prob 1: every copy has the target's own colour (flipped at most), never recoloured."""
    image, mask = _red_square_scene()

    def off_colour_copy_pixels(exact: float) -> int:
        sampler = _lookalike_sampler(lookalike_exact_prob=exact)
        count = 0
        for seed in range(16):
            rng = np.random.default_rng(seed)
            search, search_mask = image[60:188, 96:224].copy(), mask[60:188, 96:224].astype(np.float32)
            area = sampler._add_lookalike_beside(rng, search, search_mask, recolour=exact < 1)
            copy_pixels = search[area & (search_mask < 0.5)].astype(np.int32)
            count += int((np.abs(copy_pixels - (230, 30, 30)).max(1) > 0).sum())
        return count

    assert off_colour_copy_pixels(1.0) == 0
    assert off_colour_copy_pixels(0.0) > 100  # recoloured copies differ from the target


def test_instance_components_finds_separate_objects_of_similar_size() -> None:
    from vosctl.train.data import instance_components

    mask = np.zeros((100, 200), np.uint8)
    mask[20:60, 20:60] = 1
    assert instance_components(mask) is None  # one object
    mask[20:60, 100:135] = 1  # a second, similar one
    mask[90:92, 190:192] = 1  # a crumb: not an object
    labels = instance_components(mask)
    assert labels is not None and labels.max() == 2
    assert {labels[40, 40], labels[40, 120]} == {1, 2} and labels[91, 191] == 0
    mask[20:60, 100:135] = 0
    mask[20:28, 100:108] = 1  # far smaller than the first: a part, not a look-alike
    assert instance_components(mask) is None


def _squares_duts(root: Path, with_single: bool = True) -> Path:
    """A DUTS folder: an image with two red squares (one mask holds both), and one with one square."""
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir(parents=True)
    images = {"pair": (60, 140), "single": (100,)} if with_single else {"pair": (60, 140)}
    for name, lefts in images.items():
        image = np.ascontiguousarray(texture(5, 200, 300)[:, :, ::-1])
        mask = np.zeros((200, 300), np.uint8)
        for left in lefts:
            image[75:125, left : left + 50] = (30, 30, 230)  # BGR red
            mask[75:125, left : left + 50] = 255
        cv2.imwrite(str(root / "images" / f"{name}.jpg"), image)
        cv2.imwrite(str(root / "masks" / f"{name}.png"), mask)
    (root / "list.txt").write_text("\n".join(images) + "\n")
    return root


def test_instance_pairs_make_one_object_the_target_and_leave_the_other_in_view(tmp_path: Path) -> None:
    """PairConfig.instance_prob: in an image whose mask holds two separate look-alikes, the target
    is one of them; the other stays in view, outside the mask. Without it the mask holds both."""
    from vosctl.train.data import PairConfig, PairSampler, StaticImages

    static = StaticImages(_squares_duts(tmp_path / "duts"))
    assert list(static.instances) == [0]  # only the image with two objects

    def label_components(instance_prob: float, images: StaticImages) -> tuple[list[int], float]:
        cfg = PairConfig(
            template_size=64, search_size=128, negative_prob=0.0, compress_prob=0.0, instance_prob=instance_prob
        )
        sampler = PairSampler(cfg, None, images, (0.0, 1.0, 0.0))
        counts, red_outside = [], []
        for seed in range(30):
            sample = sampler._static_sample(np.random.default_rng(seed))
            if sample is None or not sample.present:
                continue
            labelled = (sample.search_mask > 0.5).astype(np.uint8)
            _, _, stats, _ = cv2.connectedComponentsWithStats(labelled)
            counts.append(int((stats[1:, cv2.CC_STAT_AREA] > 40).sum()))
            rgb = sample.search.astype(np.int32)
            red = (rgb[..., 0] - rgb[..., 1] > 80) & (rgb[..., 0] - rgb[..., 2] > 80)
            red_outside.append(float((red & (labelled == 0)).sum()) / max(1.0, float(labelled.sum())))
        return counts, float(np.mean(red_outside))

    one, red_beside = label_components(1.0, static)
    # Without instance pairs, on the image with two objects alone: the mask holds both.
    both, red_beside_whole = label_components(0.0, StaticImages(_squares_duts(tmp_path / "pair", with_single=False)))
    assert len(one) >= 20 and np.mean(np.array(one) == 1) >= 0.9  # the mask is one square
    assert np.mean(np.array(both) == 2) >= 0.6  # without instance pairs it is both
    # Red outside the mask: the other square (and pasted distractors, in both cases), on average
    # more than a square's worth beside the one-square target.
    assert red_beside > 1.0 and red_beside > red_beside_whole


def test_spill_prior_adds_the_lookalike_to_the_prior_and_never_to_the_mask() -> None:
    """The spilled prior covers the target's prior plus all or the near part of the look-alike."""
    from vosctl.train.data import spill_prior

    prior = np.zeros((64, 64), np.float32)
    prior[20:40, 10:30] = 1
    lookalike = np.zeros((64, 64), bool)
    lookalike[20:40, 31:60] = True
    whole = near = 0
    for seed in range(40):
        out = spill_prior(np.random.default_rng(seed), prior, lookalike)
        assert (out >= prior).all() and not out[~(lookalike | (prior > 0.5))].any()
        spilled = int(out[lookalike].sum())
        whole += spilled == lookalike.sum()
        near += 0 < spilled < lookalike.sum()
        if 0 < spilled < lookalike.sum():
            assert out[30, 31] == 1 and out[30, 59] == 0  # the part next to the target, not the far side
    assert whole > 5 and near > 5
    assert np.array_equal(spill_prior(np.random.default_rng(0), prior, np.zeros_like(lookalike)), prior)

    # Through the sampler: with spills on, the prior covers look-alike pixels that the mask never does.
    image, mask = _red_square_scene()
    sampler = _lookalike_sampler(spill_prior_prob=1.0, empty_prior_prob=0.0, perturb_prior_prob=0.0)
    spills = 0
    for seed in range(16):
        sample = sampler._make_sample(np.random.default_rng(seed), image, mask, image.copy(), mask, mask)
        assert sample is not None and sample.present
        outside = (sample.prior > 0.5) & (sample.search_mask < 0.5)
        spills += outside.sum() > 0.1 * sample.search_mask.sum()
    assert spills >= 8


def test_average_checkpoints_is_the_mean_of_the_weights(tmp_path: Path) -> None:
    from vosctl.model.checkpoint import average_checkpoints

    torch.manual_seed(3)
    a, b = SiamDMN(SMALL), SiamDMN(SMALL)
    paths = [save_checkpoint(a, tmp_path / "a.pt", {}), save_checkpoint(b, tmp_path / "b.pt", {})]
    soup, meta = average_checkpoints(paths)
    key = "head.0.0.weight"
    expected = (a.state_dict()[key].half().float() + b.state_dict()[key].half().float()) / 2
    assert torch.allclose(soup.state_dict()[key], expected, atol=1e-3)
    assert [m["path"] for m in meta["members"]] == [str(p) for p in paths]
    other = SiamDMN(NetworkConfig(**{**SMALL.to_dict(), "mask_channels": 4}))
    with pytest.raises(CheckpointError, match="another architecture"):
        average_checkpoints([paths[0], save_checkpoint(other, tmp_path / "c.pt", {})])


def test_dynamic_kernel_coordinates_do_not_depend_on_the_search_crop() -> None:
    """A 192 px search crop keeps the coordinate scale a 128 px one was trained with (same template),
    so the same kernels at the same cell paint the same mask over the common area."""
    small, large = SMALL, NetworkConfig(template_size=SMALL.template_size, search_size=192)
    assert small.coordinate_scale == large.coordinate_scale
    assert NetworkConfig().coordinate_scale == NetworkConfig().mask_size  # shipped models: unchanged
    torch.manual_seed(0)
    params = torch.randn(1, small.num_dynamic_params)
    location = torch.tensor([[3, 2]])
    masks = []
    for cfg in (small, large):
        model = SiamDMN(cfg).eval()
        features = torch.zeros(1, cfg.mask_channels, cfg.mask_size, cfg.mask_size)
        with torch.no_grad():
            masks.append(model.dynamic_mask(features, params, location))
    side = small.mask_size
    torch.testing.assert_close(masks[1][..., :side, :side], masks[0])


def test_training_pairs_follow_the_network_search_window() -> None:
    from vosctl.train.loop import pair_config_for

    default = pair_config_for(NetworkConfig(), {})
    assert default.search_factor == 2.0 and default.search_size == 256
    smaller = pair_config_for(NetworkConfig(search_size=192), {"scale_jitter": 0.5})
    assert smaller.search_factor == 1.5 and smaller.search_size == 192 and smaller.scale_jitter == 0.5


def test_inference_crop_is_not_the_training_crop() -> None:
    from vosctl.train.loop import pair_config_for

    cfg = NetworkConfig(inference_search_size=288)
    assert cfg.tracking_search_size == 288 and cfg.window_factor == 2.0
    assert NetworkConfig().tracking_search_size == 256
    pairs = pair_config_for(cfg, {})
    assert pairs.search_size == 256 and pairs.search_factor == 2.0  # training keeps the trained crop


def test_prototype_power_weights_the_fully_covered_template_cells(tmp_path: Path) -> None:
    """prototype_power 1 is the plain coverage-weighted mean; a higher power moves the prototype
    towards the cells the object fills, away from cells it only grazes (mostly background)."""
    torch.manual_seed(0)
    plain = SiamDMN(SMALL).eval()
    sharp = SiamDMN(NetworkConfig(**{**SMALL.to_dict(), "prototype_power": 3.0})).eval()
    sharp.load_state_dict(plain.state_dict())
    template = torch.rand(1, 3, 64, 64) * 255
    mask = torch.zeros(1, 1, 64, 64)
    mask[..., 16:32, 16:32] = 1.0  # one template cell (stride 16) filled
    mask[..., 32:36, 16:48] = 1.0  # a thin part grazing three more cells (a quarter each)
    with torch.no_grad():
        _, _, f16 = plain.backbone(plain.normalise(template))
        feat = plain.neck(f16)[0]  # (C, 4, 4)
        cover = torch.nn.functional.adaptive_avg_pool2d(mask, feat.shape[-2:])[0, 0]
        expected = (feat * cover).sum((1, 2)) / cover.sum()
        full_cell = feat[:, 1, 1]
        a, b = plain.embed_template(template, mask), sharp.embed_template(template, mask)
    assert torch.allclose(a.prototype[0], expected, atol=1e-5)  # power 1: unchanged behaviour
    assert torch.allclose(a.kernel, b.kernel)  # the correlation kernel does not change
    assert (b.prototype[0] - full_cell).norm() < 0.5 * (a.prototype[0] - full_cell).norm()
    # The power is part of the checkpoint's architecture, so a shipped model carries it.
    loaded, _ = load_checkpoint(save_checkpoint(sharp, tmp_path / "sharp.pt", {"name": "unit"}))
    assert loaded.config.prototype_power == 3.0


def test_fine_prototype_starts_as_its_parent_and_learns() -> None:
    """fine_prototype adds a zero-initialised correction from stride-8 template features: a model
    fine-tuned with it starts exactly at its parent's outputs, and the correction gets gradients."""
    torch.manual_seed(2)
    base = NetworkConfig(**{**SMALL.to_dict(), "prototype_power": 3.0})
    parent = SiamDMN(base).eval()
    child = SiamDMN(NetworkConfig(**{**base.to_dict(), "fine_prototype": True})).eval()
    missing = child.load_state_dict(parent.state_dict(), strict=False).missing_keys
    assert sorted(missing) == ["fine_prototype.bias", "fine_prototype.weight"]
    inputs = _inputs(2, SMALL)
    with torch.no_grad():
        a = parent(*inputs, location=torch.tensor([[3, 3], [4, 2]]))
        b = child(*inputs, location=torch.tensor([[3, 3], [4, 2]]))
    assert torch.equal(a.mask_logits, b.mask_logits) and torch.equal(a.score, b.score)

    template, template_mask = inputs[0], inputs[1]
    child.embed_template(template, template_mask).prototype.square().sum().backward()
    assert child.fine_prototype.weight.grad is not None and child.fine_prototype.weight.grad.abs().sum() > 0
    with torch.no_grad():
        child.fine_prototype.bias.fill_(0.5)
        moved = child.embed_template(template, template_mask).prototype
        assert torch.allclose(moved, parent.embed_template(template, template_mask).prototype + 0.5, atol=1e-5)


def test_training_only_the_named_layers_leaves_the_rest_untouched(tmp_path: Path) -> None:
    """TrainConfig.trainable: only parameters with those name prefixes move; every other weight and
    every BN running statistic stays the checkpoint's."""
    from vosctl.train.loop import TrainConfig, train

    network = {"template_size": 64, "search_size": 128, "fine_prototype": True}
    torch.manual_seed(4)
    parent = SiamDMN(NetworkConfig(**network, inference_search_size=160))  # tracked at 160, trained at 128
    with torch.no_grad():
        for parameter in parent.parameters():
            parameter.copy_(parameter.half().float())  # exact through the fp16 checkpoint
    init = save_checkpoint(parent, tmp_path / "parent.pt", {"name": "parent"})
    config = TrainConfig(
        run_dir=str(tmp_path / "run"),
        init_checkpoint=str(init),
        trainable=["fine_prototype"],
        source_weights=(0.0, 0.0, 1.0),
        batch_size=4,
        steps=6,
        epoch_steps=6,
        warmup_steps=2,
        lr=1e-2,
        bf16=False,
        network=network,
        pairs={"negative_prob": 0.0},
    )
    trained, _ = load_checkpoint(train(config, device="cpu", resume=False))
    before, after = parent.state_dict(), trained.state_dict()
    moved = {k for k in before if not torch.equal(before[k].half().float(), after[k].float())}
    assert moved and all(k.startswith("fine_prototype.") for k in moved)
    assert "backbone.features.0.1.running_mean" not in moved  # BN statistics too
    assert trained.config.inference_search_size == 160  # the parent's tracking crop, kept
    with pytest.raises(ValueError, match="no parameter name"):
        train(TrainConfig(**{**config.__dict__, "trainable": ["nothing"], "run_dir": str(tmp_path / "r2")}), "cpu")


def test_a_fine_tune_keeps_its_parents_tracking_crop_unless_it_names_one() -> None:
    from vosctl.train.loop import inherit_inference_crop

    parent = NetworkConfig(inference_search_size=288)
    assert inherit_inference_crop({"mask_stride": 2}, parent) == {"mask_stride": 2, "inference_search_size": 288}
    assert inherit_inference_crop({"inference_search_size": 320}, parent) == {"inference_search_size": 320}
    assert inherit_inference_crop({"inference_search_size": None}, parent) == {"inference_search_size": None}
    assert inherit_inference_crop({"mask_stride": 2}, NetworkConfig()) == {"mask_stride": 2}


def test_loader_workers_start_after_opencv_used_threads() -> None:
    """Training's DataLoader forks its workers; a parent whose OpenCV pool already had threads
    (any earlier cv2 work under the thread policy) used to leave them waiting forever."""
    script = textwrap.dedent(
        """
        import cv2, numpy as np
        from vosctl.train.loop import _batch_stream

        cv2.setNumThreads(2)
        image = np.zeros((1080, 1920, 3), np.uint8)
        for _ in range(3):
            cv2.GaussianBlur(image, (11, 11), 3)  # the parent's pool now has its threads
        batches = _batch_stream(lambda step: ({"step": step}, None), 0, 4, workers=2)
        assert [batch["step"] for batch, _ in batches] == [0, 1, 2, 3]
        assert cv2.getNumThreads() == 2  # the parent's setting is restored afterwards
        """
    )
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr


def test_boundary_band_is_the_ring_around_the_edge() -> None:
    from vosctl.train.losses import boundary_band

    target = torch.zeros(2, 1, 16, 16)
    target[0, 0, 4:12, 4:12] = 1.0  # sample 1 stays empty
    band = boundary_band(target, radius=1)[:, 0]
    # Within one cell of the edge, on both sides of it.
    assert bool(band[0, 3, 3]) and bool(band[0, 4, 4]) and bool(band[0, 11, 8]) and bool(band[0, 12, 8])
    assert not bool(band[0, 7, 7])  # deep inside
    assert not bool(band[0, 1, 1]) and not bool(band[0, 14, 8])  # far outside
    assert int(band[0].sum()) == 10 * 10 - 6 * 6  # the 10x10 grown square minus the 6x6 core
    assert not bool(band[1].any())  # no object, no edge
    assert int(boundary_band(target, radius=2)[0].sum()) == 12 * 12 - 4 * 4


def test_boundary_bce_only_counts_errors_near_the_edge() -> None:
    from vosctl.train.losses import boundary_bce

    target = torch.zeros(1, 1, 32, 32)
    target[..., 8:24, 8:24] = 1.0
    perfect = (target * 2 - 1) * 8.0  # confident and right everywhere
    interior_error = perfect.clone()
    interior_error[..., 15:17, 15:17] = -8.0  # a hole deep inside the object
    edge_error = perfect.clone()
    edge_error[..., 8:24, 8:10] = -8.0  # the left edge pulled in by two cells
    base = float(boundary_bce(perfect, target))
    assert base < 1e-3
    assert float(boundary_bce(interior_error, target)) == pytest.approx(base)
    assert float(boundary_bce(edge_error, target)) > 100 * base
    assert float(boundary_bce(perfect, torch.zeros_like(target))) == 0.0  # no edge: no term (not NaN)


def test_boundary_loss_weight_zero_leaves_the_total_unchanged() -> None:
    """The boundary term is logged in every run, but only a positive weight adds it to the loss."""
    from vosctl.train.data import PairConfig, PairSampler
    from vosctl.train.loop import compute_losses

    cfg = NetworkConfig(template_size=64, search_size=128)
    sampler = PairSampler(PairConfig(template_size=64, search_size=128, negative_prob=0.0), None, None, (0, 0, 1))
    model = SiamDMN(cfg).eval()
    weights = {"score": 1.0, "bce": 2.0, "dice": 1.0, "presence": 0.5}

    def total(extra: dict[str, float]) -> tuple[float, dict[str, float]]:
        rng = np.random.default_rng(5)
        batch = sampler.batch(rng, 4)
        with torch.no_grad():
            loss, stats = compute_losses(model, batch, torch.device("cpu"), {**weights, **extra}, rng)
        return float(loss), stats

    without, stats = total({})
    assert stats["boundary"] > 0
    assert total({"boundary": 0.0})[0] == without
    assert total({"boundary": 2.0})[0] == pytest.approx(without + 2.0 * stats["boundary"], rel=1e-5)


def test_mask_region_equals_the_whole_canvas_inside_and_is_background_outside() -> None:
    from vosctl.model.network import OUTSIDE_REGION_LOGIT

    torch.manual_seed(0)
    model = SiamDMN(NetworkConfig(mask_stride=2, presence_head=True)).eval()
    search = torch.rand(2, 3, 256, 256) * 255
    embedding = model.embed_template(torch.rand(2, 3, 128, 128) * 255, torch.ones(2, 1, 128, 128))
    prior = torch.zeros(2, 1, 256, 256)
    prior[..., 100:160, 90:150] = 1
    with torch.no_grad():
        whole = model.forward_search(search, embedding, prior)
        everything = model.forward_search(search, embedding, prior, mask_region=(0, 64, 0, 64))
        part = model.forward_search(search, embedding, prior, mask_region=(10, 54, 12, 50))
    assert torch.equal(whole.mask_logits, everything.mask_logits)
    assert torch.equal(whole.location, part.location) and torch.equal(whole.score, part.score)
    # Away from the region's edge (a few cells: the 3x3 convolutions' reach) the logits are the same.
    inner = whole.mask_logits[..., 4 * 10 + 16 : 4 * 54 - 16, 4 * 12 + 16 : 4 * 50 - 16]
    assert torch.allclose(inner, part.mask_logits[..., 4 * 10 + 16 : 4 * 54 - 16, 4 * 12 + 16 : 4 * 50 - 16], atol=1e-4)
    assert (part.mask_logits[..., : 4 * 10 - 2, :] - OUTSIDE_REGION_LOGIT).abs().max() < 1e-3
    assert (part.mask_logits[..., :, 4 * 50 + 2 :] - OUTSIDE_REGION_LOGIT).abs().max() < 1e-3
    with pytest.raises(ValueError, match="outside"):
        model.forward_search(search, embedding, prior, mask_region=(0, 65, 0, 64))


@pytest.mark.parametrize(
    ("size", "region"), [((256, 256), (16, 48, 16, 48)), ((160, 288), (7, 33, 12, 60)), ((256, 256), (1, 63, 0, 64))]
)
def test_the_fpn_on_a_region_equals_the_whole_crops_fpn_cropped(size: tuple[int, int], region) -> None:
    """With a mask region the stride-8 and stride-4 FPN layers run on the region (plus a halo)
    only: the stride-4 features and prior they hand the mask tower equal the whole crop's, cropped."""
    import torch.nn.functional as F

    torch.manual_seed(0)
    model = SiamDMN(NetworkConfig(mask_stride=2)).eval()
    h, w = size
    x = model.normalise(torch.rand(2, 3, h, w) * 255)
    prior4 = torch.rand(2, 1, h // 4, w // 4)
    with torch.no_grad():
        f2, f4, f8, f16 = model.backbone.forward_taps(x)
        p16 = model.lateral16(torch.cat([model.neck(f16), torch.randn(2, 128, *f16.shape[-2:])], 1))
        # The whole crop's FPN, as forward_search computes it without a region.
        p8 = model.smooth8(model.lateral8(f8) + F.interpolate(p16, size=f8.shape[-2:], mode="nearest"))
        p4 = model.lateral4(f4) + F.interpolate(p8, size=f4.shape[-2:], mode="bilinear", align_corners=False)
        whole = torch.cat([p4, prior4], 1)
        part, f2_part = model._fpn_region(p16, f8, f4, f2, prior4, region)
    top, bottom, left, right = region
    assert torch.allclose(part, whole[..., top:bottom, left:right], atol=1e-5, rtol=0)
    assert torch.equal(f2_part, f2[..., 2 * top : 2 * bottom, 2 * left : 2 * right])


def test_distillation_pulls_only_where_the_student_and_its_teacher_differ(tmp_path: Path) -> None:
    """With only the distillation term weighted, a student identical to its teacher gets no gradient
    and a different one does; a training run given a teacher checkpoint loads it and is moved by it."""
    import copy

    from vosctl.model.checkpoint import save_checkpoint
    from vosctl.train.data import PairConfig, PairSampler
    from vosctl.train.loop import compute_losses, read_log, train

    torch.manual_seed(3)
    cfg = NetworkConfig(template_size=64, search_size=128, mask_stride=2, presence_head=True)
    sampler = PairSampler(PairConfig(template_size=64, search_size=128, negative_prob=0.3), None, None, (0, 0, 1))
    model = SiamDMN(cfg).eval()  # eval: BN statistics fixed, as the teacher's are
    only_distill = {"score": 0.0, "bce": 0.0, "dice": 0.0, "presence": 0.0, "distill": 1.0}

    def gradient_norm(teacher: SiamDMN) -> float:
        model.zero_grad()
        rng = np.random.default_rng(7)
        loss, stats = compute_losses(model, sampler.batch(rng, 4), torch.device("cpu"), only_distill, rng, teacher)
        assert stats["distill"] > 0 and float(loss.detach()) == pytest.approx(stats["distill"])
        loss.backward()
        return float(sum(p.grad.norm() ** 2 for p in model.parameters() if p.grad is not None) ** 0.5)

    twin = copy.deepcopy(model)
    assert gradient_norm(twin) < 1e-5
    with torch.no_grad():
        for parameter in twin.parameters():
            parameter.mul_(1.0 + 0.1 * torch.randn_like(parameter))
    assert gradient_norm(twin) > 1e-3

    # Through train(): the teacher (a checkpoint) is loaded, frozen, and its term logged.
    save_checkpoint(twin, tmp_path / "teacher.pt", {"name": "teacher"})
    network = {"template_size": 64, "search_size": 128, "mask_stride": 2, "presence_head": True}
    run = _tiny_run(tmp_path, "distilled", 4, network=network, teacher_checkpoint=str(tmp_path / "teacher.pt"))
    train(run, device="cpu", resume=False)
    assert any(e["event"] == "teacher" for e in read_log(tmp_path / "distilled"))
    # A teacher whose outputs lie on other grids is refused, naming the difference.
    save_checkpoint(SiamDMN(NetworkConfig(template_size=64, search_size=96)), tmp_path / "other.pt", {})
    with pytest.raises(InputError, match="search_size 96 vs 128"):
        train(_tiny_run(tmp_path, "other", 4, teacher_checkpoint=str(tmp_path / "other.pt")), device="cpu")
    train(_tiny_run(tmp_path, "plain", 4, network=network), device="cpu", resume=False)
    taught, plain = (torch.load(tmp_path / r / "last.pt", weights_only=False)["model"] for r in ("distilled", "plain"))
    assert any(not torch.equal(taught[k], plain[k]) for k in plain)  # the same seed and batches otherwise


def test_colour_input_starts_as_its_parent_and_reads_the_template_s_colours() -> None:
    """colour_input: the template's colour histograms (object vs the rest of its crop) looked up over
    the search crop, through a zero-initialised branch. A fine-tune from a parent without it starts
    at the parent's outputs exactly; the branch gets gradients; a colour only on the object scores
    +1 (clipped), one only around it -1, one on neither a mild pull in; a mask region's logits equal
    the whole crop's away from the region's edge, as without the branch."""
    from vosctl.model.network import colour_bin_index
    from vosctl.train.loop import load_parent_weights

    torch.manual_seed(3)
    base = NetworkConfig(**{**SMALL.to_dict(), "mask_stride": 2})
    parent = SiamDMN(base).eval()
    child = SiamDMN(NetworkConfig(**{**base.to_dict(), "colour_input": True})).eval()
    new_keys, narrowed = load_parent_weights(child, parent.state_dict(), parent.config)
    assert sorted(new_keys) == ["colour_in.0.bias", "colour_in.0.weight", "colour_in.2.bias", "colour_in.2.weight"]
    assert not narrowed
    inputs = _inputs(2, base)
    location = torch.tensor([[3, 3], [4, 2]])
    with torch.no_grad():
        a = parent(*inputs, location=location)
        b = child(*inputs, location=location)
    assert torch.equal(a.mask_logits, b.mask_logits) and torch.equal(a.score, b.score)

    # A red object on a blue background: red is the object's colour, blue the surround's.
    size = base.template_size
    template = torch.zeros(1, 3, size, size)
    template[:, 2] = 200.0
    template_mask = torch.zeros(1, 1, size, size)
    template_mask[..., 16:48, 16:48] = 1.0
    template[..., 16:48, 16:48] = torch.tensor([220.0, 10.0, 10.0])[:, None, None]
    colour = child.embed_template(template, template_mask).colour
    assert colour is not None and colour.shape == (1, 4096)

    def bin_of(rgb: tuple[float, float, float]) -> int:
        return int(colour_bin_index(torch.tensor(rgb).view(1, 3, 1, 1))[0, 0])

    assert colour[0, bin_of((220, 10, 10))] == 1.0 and colour[0, bin_of((0, 0, 200))] == -1.0
    assert 0.0 < colour[0, bin_of((10, 200, 10))] < 0.5  # seen on neither side

    child.train()
    out = child(template.expand(2, -1, -1, -1), template_mask.expand(2, -1, -1, -1), *inputs[2:], location=location)
    out.mask_logits.square().mean().backward()
    assert child.colour_in[2].weight.grad.abs().sum() > 0
    child.eval()
    with torch.no_grad():
        torch.nn.init.normal_(child.colour_in[2].weight, std=0.5)
        embedding = child.embed_template(*inputs[:2])
        whole = child.forward_search(inputs[2], embedding, inputs[3], location=location, mask_on_grid=True)
        part = child.forward_search(
            inputs[2], embedding, inputs[3], location=location, mask_on_grid=True, mask_region=(4, 28, 6, 30)
        )
        moved = parent.forward_search(
            inputs[2], parent.embed_template(*inputs[:2]), inputs[3], location=location, mask_on_grid=True
        )
    assert not torch.allclose(whole.mask_logits, moved.mask_logits)  # the branch, once trained, acts
    inner = (..., slice(2 * 4 + 8, 2 * 28 - 8), slice(2 * 6 + 8, 2 * 30 - 8))
    assert torch.allclose(whole.mask_logits[inner], part.mask_logits[inner], atol=1e-4)
