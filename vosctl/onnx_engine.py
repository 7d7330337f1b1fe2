"""ONNX Runtime as the CPU engine for the search forward (optional: ``pip install vosctl[onnx]``).

The search branch (backbone, correlation, head, dynamic mask, and the engine's post-processing:
the mask logits, the peak score, similarity, presence) is exported with ``torch.onnx.export(...,
dynamo=True)`` with a dynamic batch (objects) and dynamic canvas height and width (the lost-object
canvas grows; ``--full-frame`` follows the frame), then run by ONNX Runtime's CPU provider. The
template branch stays in torch: it runs once per prompt, not per frame.

The export happens at first use, from the loaded checkpoint, and is cached in
``$XDG_CACHE_HOME/vosctl/onnx`` (``~/.cache/vosctl/onnx``), keyed by a hash of the weights, the
architecture, the export wrapper and the torch / onnx / onnxruntime versions; the file is written
under a temporary name and renamed, so concurrent first runs never see half a model. Any failure
(ONNX Runtime missing, an export the installed torch cannot do) falls back to torch with one
warning line, never a wrong result.

The wrapper is generic over :class:`~vosctl.model.network.TemplateEmbedding`'s dataclass fields
(each becomes one graph input, in field order) and over ``SearchOutput.extras`` (``presence`` is
used when the network has it), so architecture changes need no edit here.

Owner: throughput issue (#9).
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
from torch import nn

from vosctl.engine import Engine, SearchGraph, SearchResult, template_fields
from vosctl.model.network import SiamDMN, TemplateEmbedding

EXPORT_VERSION = 4  # bump when SearchGraph's inputs, outputs or post-processing change
OUTPUTS = ("mask_logits", "peak", "similarity", "presence")


def cache_dir() -> Path:
    """Where exported models are kept: ``$XDG_CACHE_HOME/vosctl/onnx`` (default ``~/.cache``)."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "vosctl" / "onnx"


def _xcorr_exportable(search: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """``SiamDMN._depthwise_xcorr`` without a batch-dependent ``groups`` (ONNX Conv needs a constant one).

    The same sum, written as k*k shifted multiply-adds: exportable with a dynamic object count,
    and cheap at the stride-16 resolution it runs at.
    """
    h, w = search.shape[-2:]
    k = kernel.shape[-1]
    pad_lo, pad_hi = (k - 1) // 2, k // 2
    padded = torch.nn.functional.pad(search, (pad_lo, pad_hi, pad_lo, pad_hi))
    out = padded[:, :, 0:h, 0:w] * kernel[:, :, 0:1, 0:1]
    for dy in range(k):
        for dx in range(k):
            if dy or dx:
                out = out + padded[:, :, dy : dy + h, dx : dx + w] * kernel[:, :, dy : dy + 1, dx : dx + 1]
    return out / float(k * k)


def _translations() -> dict:
    """ONNX translations the exporter lacks for symbolic sizes: ``int_tensor % canvas_width``
    (the best cell's column, in forward_search) has a symbolic divisor, which the stock
    ``remainder.Scalar`` translation only accepts as a constant."""
    from onnxscript import opset18 as op

    def remainder_scalar(self, other):
        return op.Mod(self, op.CastLike(other, self))

    return {torch.ops.aten.remainder.Scalar: remainder_scalar}


def _weights_hash(model: nn.Module) -> str:
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(str(tuple(tensor.shape)).encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def cache_key(model: SiamDMN) -> str:
    """Weights + architecture + wrapper + tool versions: any change gives a new file."""
    import onnx
    import onnxruntime

    parts = {
        "weights": _weights_hash(model),
        "config": model.config.to_dict(),
        "fields": template_fields(model.config),
        "export": EXPORT_VERSION,
        "torch": torch.__version__,
        "onnx": onnx.__version__,
        "onnxruntime": onnxruntime.__version__,
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:24]


def _example_inputs(model: SiamDMN, objects: int = 2) -> tuple[torch.Tensor, ...]:
    cfg = model.config
    with torch.inference_mode():
        template = torch.rand(objects, 3, cfg.template_size, cfg.template_size) * 255
        embedding = model.embed_template(template, torch.ones(objects, 1, cfg.template_size, cfg.template_size))
    size = cfg.search_size
    search = torch.rand(objects, 3, size, size) * 255
    prior = torch.zeros(objects, 1, size, size)
    bias = torch.zeros(objects, 1, size // cfg.feature_stride, size // cfg.feature_stride)
    return (search, prior, bias, *(getattr(embedding, name).clone() for name in template_fields(cfg)))


def export_search(model: SiamDMN, path: Path) -> None:
    """Export the (already fused, eval, fp32, CPU) search graph to ``path``, atomically."""
    graph = SearchGraph(model).eval()
    inputs = _example_inputs(model)
    batch = torch.export.Dim("objects", min=1, max=256)
    # Canvas sides are multiples of 16: declare them as 16 x k so the strided shapes stay exact.
    rows, cols = torch.export.Dim("rows16", min=1, max=512), torch.export.Dim("cols16", min=1, max=512)
    canvas = {0: batch, 2: 16 * rows, 3: 16 * cols}
    # The template fields are forward()'s *args: one nested entry holding one spec per field.
    fields = template_fields(model.config)
    dynamic = (canvas, canvas, {0: batch, 2: rows, 3: cols}, tuple({0: batch} for _ in fields))
    names = ["search", "prior", "score_bias", *fields]
    # Export-only substitute for the grouped convolution (an instance attribute shadows the method).
    model._depthwise_xcorr = _xcorr_exportable  # type: ignore[method-assign]
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(handle)
    try:
        with torch.inference_mode(False), torch.no_grad():
            program = torch.onnx.export(
                graph,
                inputs,
                custom_translation_table=_translations(),
                input_names=names,
                output_names=list(OUTPUTS),
                dynamic_shapes=dynamic,
                dynamo=True,
                external_data=False,
                verbose=False,
            )
            program.save(tmp)
        os.replace(tmp, path)
    finally:
        del model._depthwise_xcorr
        if os.path.exists(tmp):
            os.unlink(tmp)


class OrtEngine(Engine):
    """:class:`Engine` whose per-frame search runs in ONNX Runtime (CPU, fp32); templates stay in torch."""

    supports_mask_region = False  # one exported graph, over the whole canvas

    def __init__(self, model: SiamDMN, threads: int | None = None, cache: Path | None = None) -> None:
        super().__init__(model, device="cpu", precision="fp32")
        import onnxruntime as ort

        path = (cache or cache_dir()) / f"search-{cache_key(self.model)}.onnx"
        if not path.exists():
            print(f"vosctl: exporting the network for ONNX Runtime (once; cached in {path.parent})", file=sys.stderr)
            export_search(self.model, path)
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or torch.get_num_threads()
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        # Do not spin: the same reason as vosctl.threads (parallel runs must not steal each other's cores).
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.path = path
        self.backend = "onnxruntime"
        self.fields = template_fields(self.model.config)  # the exported graph's template inputs

    def search(
        self,
        search: np.ndarray,
        templates: TemplateEmbedding,
        prior: np.ndarray,
        score_bias: np.ndarray | None,
        mask_region: tuple[int, int, int, int] | None = None,
    ) -> SearchResult:
        # The exported graph runs the mask path over the whole canvas (supports_mask_region is
        # False, so the tracker passes None): a region given anyway is not used.
        n, height, width = search.shape[:3]
        feeds = {
            "search": np.ascontiguousarray(search.transpose(0, 3, 1, 2), dtype=np.float32),
            "prior": (prior[:, None] > 127).astype(np.float32),
            "score_bias": (
                np.zeros((n, 1, height // 16, width // 16), np.float32) if score_bias is None else score_bias
            ),
        }
        for name in self.fields:
            feeds[name] = getattr(templates, name).detach().float().numpy()
        mask_logits, peak, similarity, presence = self.session.run(list(OUTPUTS), feeds)
        return SearchResult(mask_logits=mask_logits, peak=peak, similarity=similarity, presence=presence)


def make_engine(model: SiamDMN, backend: str, device: str, precision: str, threads: int | None) -> Engine:
    """The engine for ``backend``: 'torch', 'onnx' (ONNX Runtime, CPU only), or 'auto' (see SegmenterConfig).

    'auto' takes ONNX Runtime only on a CPU where torch runs fp32 without oneDNN-fused traces. Where
    it has them (x86-64), torch is the faster engine: 53.0 vs 33.8 fps end to end on an AMD Zen 4
    (round 28, one object, 2 threads, medians of 3 interleaved). ONNX Runtime's earlier lead
    (1.23x, round 6) was over plain, unfused torch.
    """
    from vosctl.errors import InputError

    if backend not in ("auto", "torch", "onnx"):
        raise InputError(f"unknown engine '{backend}' (use auto, torch or onnx)")
    torch_engine = None
    if backend == "auto" or backend == "torch":
        torch_engine = Engine(model, device=device, precision=precision)
        if (
            backend == "torch"
            or torch_engine.torch_device.type != "cpu"
            or torch_engine.precision != "fp32"
            or (torch_engine.trace and torch_engine.fuse)
        ):
            return torch_engine  # CUDA, a CPU with native bf16, or fused fp32 traces: torch is the engine there
    try:
        return OrtEngine(model, threads=threads)
    except Exception as error:  # noqa: BLE001 - any export/runtime failure: torch is the fallback
        # "auto" without the optional extra installed is the normal case, not worth a warning.
        if not (backend == "auto" and isinstance(error, ImportError)):
            print(
                f"vosctl: warning: ONNX Runtime engine unavailable ({type(error).__name__}: {error}); using torch",
                file=sys.stderr,
            )
        return torch_engine or Engine(model, device=device, precision=precision)
