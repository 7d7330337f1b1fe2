"""Where and how the network runs: device choice, numeric precision, and the batched forward call.

The tracker never touches autocast, dtypes or device transfers itself; it hands uint8 crops to an
:class:`Engine` and gets numpy arrays back. That keeps the precision choice (a pure function,
:func:`choose_precision`) testable on its own and lets another backend (ONNX Runtime, a
device-resident CUDA path) replace this one behind the same two calls, ``embed`` and ``search``.

Owner: throughput issue (#9).
"""

from __future__ import annotations

import dataclasses
import platform
import warnings
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from vosctl.errors import InputError
from vosctl.model.network import SiamDMN, TemplateEmbedding, fuse_for_inference, template_fields


def pick_device(device: str) -> torch.device:
    """'auto' -> CUDA when available, else CPU; 'cpu', 'cuda' or 'cuda:N' as asked (a clear error if impossible)."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cpu":
        return torch.device("cpu")
    kind, _, index = device.partition(":")
    if kind != "cuda" or (index and not index.isdigit()):
        raise InputError(f"unknown device '{device}' (use auto, cpu, cuda or cuda:N)")
    if not torch.cuda.is_available():
        raise InputError(f"--device {device} was asked for but no CUDA GPU is available")
    if index and int(index) >= torch.cuda.device_count():
        raise InputError(f"--device {device}: there are only {torch.cuda.device_count()} CUDA GPU(s) (cuda:0 ...)")
    # A bare "cuda" means the current device; name it, so torch.cuda calls and tensors agree.
    return torch.device("cuda", int(index) if index else torch.cuda.current_device())


PRECISIONS = ("auto", "fp32", "bf16", "fp16")

# oneDNN's CPU ISA levels in increasing order (ONEDNN_MAX_CPU_ISA values); native bf16 dot
# products start at AVX512_CORE_BF16. AVX2_VNNI_2 only converts bf16, it does not compute in it.
_ONEDNN_ISA_ORDER = (
    "SSE41",
    "AVX",
    "AVX2",
    "AVX2_VNNI",
    "AVX2_VNNI_2",
    "AVX512_CORE",
    "AVX512_CORE_VNNI",
    "AVX512_CORE_BF16",
    "AVX10_1_512",
    "AVX512_CORE_FP16",
    "AVX10_1_512_AMX",
    "AVX512_CORE_AMX",
    "AVX10_1_512_AMX_FP16",
    "AVX512_CORE_AMX_FP16",
)
_NATIVE_BF16_FLAGS = frozenset({"avx512_bf16", "amx_bf16"})


@dataclass(frozen=True)
class Capabilities:
    """What the hardware computes natively; everything :func:`choose_precision` looks at."""

    cpu_flags: frozenset[str] = frozenset()  # /proc/cpuinfo flags
    onednn_max_isa: str | None = None  # ONEDNN_MAX_CPU_ISA (or DNNL_MAX_CPU_ISA) when set
    cuda_capability: tuple[int, int] | None = None  # compute capability of the chosen GPU
    # The engine's fp32 CPU path runs as frozen TorchScript traces with oneDNN Graph fusion here
    # (:func:`onednn_fusion_available`): what makes fp32 faster than eager bf16 (round 25).
    onednn_fusion: bool = False

    def _onednn_allows(self, level: str) -> bool:
        """oneDNN may use ISA ``level`` (``onednn_max_isa`` unset, ALL/DEFAULT, or at or above it)."""
        cap = (self.onednn_max_isa or "").strip().upper()
        if cap in ("", "ALL", "DEFAULT"):
            return True
        if cap not in _ONEDNN_ISA_ORDER:
            return False  # an ISA name we do not know: fp32 is the safe answer
        return _ONEDNN_ISA_ORDER.index(cap) >= _ONEDNN_ISA_ORDER.index(level)

    @property
    def cpu_native_bf16(self) -> bool:
        """The CPU has bf16 arithmetic (AVX512_BF16 or AMX) and oneDNN is allowed to use it."""
        return bool(self.cpu_flags & _NATIVE_BF16_FLAGS) and self._onednn_allows("AVX512_CORE_BF16")

    @property
    def cpu_amx_bf16(self) -> bool:
        """Native bf16 through AMX tiles (Sapphire Rapids and later), allowed by oneDNN's cap
        (AVX10_1_512_AMX is the first level with AMX tiles)."""
        return "amx_bf16" in self.cpu_flags and self._onednn_allows("AVX10_1_512_AMX")


def cpu_flags(cpuinfo: str = "/proc/cpuinfo") -> frozenset[str]:
    """The CPU feature flags the kernel reports (empty where /proc/cpuinfo does not exist)."""
    try:
        with open(cpuinfo, encoding="utf-8", errors="replace") as handle:
            for line in handle:
                if line.startswith(("flags", "Features")):
                    return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset()


def detect_capabilities(device: torch.device) -> Capabilities:
    """This machine's :class:`Capabilities` for ``device`` (reads /proc/cpuinfo, the environment, CUDA)."""
    import os

    cuda = None
    if device.type == "cuda":
        cuda = tuple(torch.cuda.get_device_capability(device))
    isa = os.environ.get("ONEDNN_MAX_CPU_ISA") or os.environ.get("DNNL_MAX_CPU_ISA")
    return Capabilities(cpu_flags(), isa, cuda, onednn_fusion_available(device))  # type: ignore[arg-type]


def choose_precision(requested: str, device: torch.device, capabilities: Capabilities) -> str:
    """The precision the forward pass runs in: 'fp32', 'bf16' or 'fp16'. A pure function.

    'auto' picks a reduced precision only where the hardware computes in it natively and it is
    the faster path; emulated bf16 is 1.8x (AVX-512) to 18x (AVX2) slower than fp32 on CPU.
    CPU with native bf16: where the fp32 path runs as oneDNN-fused traces (x86-64), fp32 — on an
    AVX512_BF16 CPU (AMD Zen 4) it was 1.22x eager bf16's speed end to end and 0.002 J&F more
    accurate (round 25) — except with AMX tiles (Sapphire Rapids), where bf16 stays (not measured
    here); without fused traces, bf16. CUDA: fp32 on Hopper (compute capability 9.x), where this
    small network's time is set by kernel launches, not arithmetic, and fp32 measured faster on an
    H200 each time it was timed (network alone, 1-4 objects: 4.4 / 3.9 / 4.8 ms against bf16's
    5.8 / 5.7 / 5.8 in round 28; 5.8 vs 7.2 ms in round 17); bf16 on other GPUs from compute
    capability 8.0 (Ampere; not measured here), fp16 from 7.0 (tensor cores: V100, T4), else fp32.
    An explicit request is honoured as asked.
    """
    if requested not in PRECISIONS:
        raise InputError(f"unknown precision '{requested}' (use {', '.join(PRECISIONS)})")
    if requested != "auto":
        return requested
    if device.type == "cuda":
        cc = capabilities.cuda_capability or (0, 0)
        if cc[0] == 9:
            return "fp32"
        if cc >= (8, 0):
            return "bf16"
        return "fp16" if cc >= (7, 0) else "fp32"
    if not capabilities.cpu_native_bf16:
        return "fp32"
    if capabilities.onednn_fusion and not capabilities.cpu_amx_bf16:
        return "fp32"
    return "bf16"


_AUTOCAST_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def input_memory_format(device: torch.device) -> torch.memory_format:
    """The layout the network's input crops take on ``device``, for every path that makes them.

    CPU: NCHW-contiguous. The model's first step (subtract the mean, divide by the std per channel)
    runs ~8x slower on a channels_last tensor there (0.6 vs 0.08 ms at 288 px), and the
    convolutions after it are as fast either way (round 15). CUDA: channels_last, the layout its
    convolution kernels prefer; not re-measured since round 15 found the CPU's slow path.
    """
    return torch.channels_last if device.type == "cuda" else torch.contiguous_format


@dataclass
class SearchResult:
    """Per-object outputs of one batched search forward, on the host, in crop coordinates."""

    # (N, h, w) float32 mask logits over the search canvas, on the network's mask grid (h = H / the
    # model's mask_stride; :func:`vosctl.geometry.grid_matrix` maps frame pixels onto it). Logits,
    # not probabilities, and not upsampled to the canvas: the tracker resamples them once, grid ->
    # frame, and thresholds there, as SAM 2 resamples its low-resolution logits to the video.
    mask_logits: np.ndarray
    peak: np.ndarray  # (N,) float32 sigmoid of the centre score at the chosen cell
    similarity: np.ndarray  # (N,) float32 cosine of the masked search features to the template
    presence: np.ndarray  # (N,) float32 probability that the object is in the canvas (peak if no head)


class SearchGraph(nn.Module):
    """forward_search + the engine's post-processing with plain tensor inputs and outputs.

    What both fast paths compile: TorchScript traces (:class:`Engine`, CPU) and the ONNX export
    (:mod:`vosctl.onnx_engine`). Generic over TemplateEmbedding's fields and over
    ``SearchOutput.extras`` (``presence`` when the network has it), so architecture changes need
    no edit here. Outputs: mask logits on the mask grid (N, H / mask_stride, W / mask_stride), peak
    score, similarity and presence (N,).
    """

    def __init__(self, model: SiamDMN, mask_region: tuple[int, int, int, int] | None = None) -> None:
        super().__init__()
        self.model = model
        self.fields = template_fields(model.config)
        self.mask_region = mask_region  # fixed per graph (a trace bakes it in): see SiamDMN.forward_search

    def forward(self, search: torch.Tensor, prior: torch.Tensor, score_bias: torch.Tensor, *template: torch.Tensor):
        embedding = TemplateEmbedding(**dict(zip(self.fields, template)))
        out = self.model.forward_search(
            search, embedding, prior, score_bias=score_bias, mask_region=self.mask_region, mask_on_grid=True
        )
        n = search.shape[0]
        rows, cols = out.location[:, 0], out.location[:, 1]
        peak = torch.sigmoid(out.score[torch.arange(n, device=search.device), 0, rows, cols].float())
        presence = out.extras.get("presence")
        presence = peak if presence is None else torch.sigmoid(presence.float()).reshape(n)
        mask_logits = out.mask_logits.float()[:, 0]
        return mask_logits, peak, out.extras["similarity"].float(), presence


class EmbedGraph(nn.Module):
    """embed_template with plain tensor outputs (TemplateEmbedding's fields, in order): what the engine traces."""

    def __init__(self, model: SiamDMN) -> None:
        super().__init__()
        self.model = model
        self.fields = template_fields(model.config)

    def forward(self, template: torch.Tensor, template_mask: torch.Tensor) -> tuple[torch.Tensor, ...]:
        embedding = self.model.embed_template(template, template_mask)
        return tuple(getattr(embedding, name) for name in self.fields)


# Traces kept per engine (canvas shapes: the tracked objects' one with and without its mask
# region, a few lost-object canvases).
TRACE_CACHE_SIZE = 6
# A shape is traced at its TRACE_AFTER_USES-th use. A trace costs ~0.5 s to make and ~0.2 s of
# TorchScript profiling runs, repaid after roughly 100-150 frames (it saves ~4-8 ms a frame), so
# one-off shapes (a lost object's canvas while it still grows, a box prompt) and very short clips
# stay eager.
TRACE_AFTER_USES = 8
# ... and only when at least this many more calls are expected (when the caller knows: a video of
# known length). Below it a trace costs about what it saves. Plain traces (round 6, v5-fast): an
# 82-frame clip ~15 % slower traced, a 300-frame clip within noise, so the bar was 300. Fused traces
# save more per frame (round 13, v6, fresh segmenter per run, 2 threads, medians of 3 interleaved,
# wall s traced-and-fused vs eager): 80 frames 3.48 vs 3.68, 150 frames 5.65 vs 5.92, 160 frames
# 4.41 vs 5.31 (v5-fast 3.94 vs 4.16), 300 frames 9.75 vs 12.82; so 150.
TRACE_MIN_REMAINING = 150
# The template branch (a prompt, then the appearance memory every few frames) is traced by the same
# rule, counted in template embeddings: a fused trace of it costs ~0.6 s to make and run twice and
# saves ~5.8 ms a call (v6, 128 px, one object, 2 threads: eager 9.0, plain trace 6.3, fused 3.2
# ms), so it pays after ~100 calls, e.g. 500 frames with a memory update every 5 (round 14). End
# to end: +7.7 % with serial I/O (Segmenter.track over the caller's frames); no measurable gain
# beside `segment`'s decode and write threads (paired medians 1.02, 0.98).
EMBED_TRACE_MIN_REMAINING = 100
# Template traces kept (one per number of objects embedded together), apart from the search traces.
EMBED_TRACE_CACHE_SIZE = 3


def onednn_fusion_available(device: torch.device, machine: str | None = None) -> bool:
    """Can TorchScript hand this device's graphs to oneDNN Graph (conv + ReLU6 / add fusion)?

    x86-64 CPUs with a oneDNN build of torch only: that is where TorchScript's oneDNN Graph fuser
    is built and was measured; elsewhere (ARM, CUDA) the engine keeps plain traces.
    """
    machine = (machine or platform.machine()).lower()
    return (
        device.type == "cpu"
        and machine in ("x86_64", "amd64")
        and torch.backends.mkldnn.is_available()
        and hasattr(torch.jit, "enable_onednn_fusion")
    )


@contextmanager
def onednn_fusion(enabled: bool) -> Iterator[None]:
    """TorchScript's oneDNN Graph switch, set for the calls inside the block and restored after it.

    The switch is process-wide in torch; scoping it to the engine's own calls keeps other
    TorchScript users in the process (and engines made with ``fuse=False``) as they were.
    """
    before = torch.jit.onednn_fusion_enabled()
    if before == enabled:
        yield
        return
    torch.jit.enable_onednn_fusion(enabled)
    try:
        yield
    finally:
        torch.jit.enable_onednn_fusion(before)


def worth_tracing(uses: int, expected_calls: int | None, min_remaining: int = TRACE_MIN_REMAINING) -> bool:
    """Make a trace for a shape used ``uses`` times so far, with ``expected_calls`` in all (None: unknown)?"""
    if uses < TRACE_AFTER_USES:
        return False
    return expected_calls is None or expected_calls - uses >= min_remaining


@dataclass
class TraceCache:
    """One graph's traces (per input shapes and variant), with the counts that decide when to make one.

    Kept up to ``size`` (least recently used dropped); a shape is traced when
    :func:`worth_tracing` says so with ``expected`` calls in the current job and ``min_remaining``.
    """

    size: int
    min_remaining: int
    expected: int | None = None  # calls the current job expects (None: unknown)
    traces: OrderedDict[tuple, torch.jit.ScriptModule] = dataclasses.field(default_factory=OrderedDict)
    uses: dict[tuple, int] = dataclasses.field(default_factory=dict)  # calls per not-yet-traced key

    def __len__(self) -> int:
        return len(self.traces)

    def new_job(self, expected: int | None) -> None:
        self.expected = expected
        self.uses.clear()


class Engine:
    """Runs a (BN-fused) SiamDMN on one device in one precision.

    Two ways in: :meth:`search` takes host (numpy) crops, the CPU path; :meth:`search_tensors`
    takes crops already on the device (the CUDA loop crops on the GPU with
    :func:`vosctl.geometry.crop_torch`). Either way the outputs come back in ONE host copy.

    On CPU in fp32 the per-frame search graph runs as a TorchScript trace per input shape
    (``trace``): the same operations, outputs equal to 1e-4, run by TorchScript's profiling
    executor instead of eager PyTorch (network alone, 2 threads, one object: v5-fast 23.8 -> 15.5
    ms, v5 at 288 px 38.1 -> 31.7 ms; ``benchmarks/bench_model.py --eager``). The gain is the
    executor's: with its optimisations off (``torch.jit.optimized_execution(False)``) the trace runs
    at eager speed. A trace fixes every shape-derived value, so each
    (objects, height, width) gets its own, made at that shape's TRACE_AFTER_USES-th use and kept
    in a small LRU cache; other shapes run eagerly.

    On a CPU with oneDNN each trace is also frozen and run with TorchScript's oneDNN Graph fusion
    (``fuse``): the weights become constants and oneDNN runs each convolution together with the
    ReLU6 / add after it, which eager PyTorch and the plain trace run as separate passes over
    memory. Outputs equal to 1e-4; network alone, v6 at 288 px, 2 threads, interleaved: 0.76-0.87x
    the plain trace's time for 1-4 objects (``benchmarks/bench_model.py --fusion``).
    """

    backend = "torch"
    # Whether ``mask_region`` is honoured (the tracker asks for regions only from engines that do).
    supports_mask_region = True

    def __init__(
        self,
        model: SiamDMN,
        device: str = "auto",
        precision: str = "auto",
        capabilities: Capabilities | None = None,
        trace: bool | None = None,
        fuse: bool | None = None,
        trace_templates: bool = True,
    ) -> None:
        self.torch_device = pick_device(device)
        self.input_format = input_memory_format(self.torch_device)  # of the crops, on every path
        self.capabilities = capabilities or detect_capabilities(self.torch_device)
        self.precision = choose_precision(precision, self.torch_device, self.capabilities)
        # BN folded into the convolutions, on a copy: the caller's model (maybe training) is untouched.
        self.model = fuse_for_inference(model).to(self.torch_device).to(memory_format=torch.channels_last)
        self.config = model.config
        # One search graph per mask region (None: the whole canvas), made on first use.
        self._graphs: dict[tuple[int, int, int, int] | None, SearchGraph] = {}
        # Traces only where they were measured to pay (CPU, fp32; autocast is not traced here).
        if trace is None:
            trace = self.torch_device.type == "cpu" and self.precision == "fp32"
        self.trace = trace
        # Freeze traces and run them with oneDNN Graph fusion (CPU builds with oneDNN; None: there).
        self.fuse = onednn_fusion_available(self.torch_device) if fuse is None else fuse
        self._traces = TraceCache(TRACE_CACHE_SIZE, TRACE_MIN_REMAINING)
        # The template branch is traced too (by its own count; False keeps it eager, e.g. to compare).
        self.trace_templates = trace_templates
        self._embed_graph = EmbedGraph(self.model).eval()
        # Counted and cached apart, so template traces never push out the per-frame search traces.
        self._embed_traces = TraceCache(EMBED_TRACE_CACHE_SIZE, EMBED_TRACE_MIN_REMAINING)

    @property
    def device(self) -> str:
        return str(self.torch_device)

    def expect_calls(self, count: int | None, embeds: int | None = None) -> None:
        """A new job of ``count`` search calls and ``embeds`` template embeddings (None: unknown)
        starts: traces are made only if they pay."""
        self._traces.new_job(count)
        self._embed_traces.new_job(embeds)

    @property
    def expected_calls(self) -> int | None:
        """Search calls the current job expects (its frame count; None: unknown)."""
        return self._traces.expected

    @property
    def expected_embeds(self) -> int | None:
        """Template embeddings the current job expects (None: unknown)."""
        return self._embed_traces.expected

    def _autocast(self) -> torch.autocast:
        dtype = _AUTOCAST_DTYPES.get(self.precision, torch.bfloat16)
        return torch.autocast(self.torch_device.type, dtype=dtype, enabled=self.precision in _AUTOCAST_DTYPES)

    def _images_to_tensor(self, images: np.ndarray) -> torch.Tensor:
        tensor = torch.from_numpy(images).to(self.torch_device, non_blocking=True)
        # In the one copy that makes it float, the layout input_memory_format picks.
        return tensor.permute(0, 3, 1, 2).to(torch.float32, memory_format=self.input_format)

    def embed(self, crops: np.ndarray, masks: np.ndarray) -> TemplateEmbedding:
        """crops: (N, T, T, 3) uint8; masks: (N, T, T) float32 0..1 -> the objects' template embedding.

        Traced (and fused) like the search, by its own count: only when enough embeddings are to
        come (EMBED_TRACE_MIN_REMAINING), since the template branch runs only at prompts and every
        few frames for the appearance memory.
        """
        inputs = (self._images_to_tensor(crops), torch.from_numpy(masks).to(self.torch_device)[:, None])
        graph = self._embed_graph
        with torch.inference_mode(), self._autocast():
            runner = self._traced(graph, inputs, self._embed_traces) if self.trace_templates else graph
            fields = self._run(graph, runner, inputs)
        return TemplateEmbedding(**dict(zip(graph.fields, fields)))

    def search(
        self,
        search: np.ndarray,
        templates: TemplateEmbedding,
        prior: np.ndarray,
        score_bias: np.ndarray | None,
        mask_region: tuple[int, int, int, int] | None = None,
    ) -> SearchResult:
        """search: (N, H, W, 3) uint8; prior: (N, H, W) uint8 0/255; score_bias: (N, 1, h, w) or None.

        ``mask_region``: run the mask path over that part of the canvas only (see
        :meth:`SiamDMN.forward_search`); None: all of it.
        """
        prior_t, bias = self.prior_and_bias(prior, score_bias)
        return self.search_tensors(self._images_to_tensor(search), templates, prior_t, bias, mask_region)

    def prior_and_bias(
        self, prior: np.ndarray, score_bias: np.ndarray | None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Host prior (N, H, W) uint8 0/255 and bias -> what :meth:`search_tensors` takes, on the device."""
        prior_t = torch.from_numpy(prior).to(self.torch_device, non_blocking=True)[:, None].gt(127).float()
        bias = None if score_bias is None else torch.from_numpy(score_bias).to(self.torch_device, non_blocking=True)
        return prior_t, bias

    def search_tensors(
        self,
        search: torch.Tensor,
        templates: TemplateEmbedding,
        prior: torch.Tensor,
        score_bias: torch.Tensor | None,
        mask_region: tuple[int, int, int, int] | None = None,
    ) -> SearchResult:
        """search: (N, 3, H, W) float 0..255 on the device; prior: (N, 1, H, W) float 0/1; bias as above."""
        n = search.shape[0]
        if score_bias is None:  # no motion penalty: a zero bias (one graph signature for both cases)
            score_bias = search.new_zeros(n, 1, search.shape[2] // 16, search.shape[3] // 16)
        graph = self._graphs.get(mask_region)
        if graph is None:
            graph = self._graphs[mask_region] = SearchGraph(self.model, mask_region).eval()
        inputs = (search, prior, score_bias, *(getattr(templates, name) for name in graph.fields))
        with torch.inference_mode(), self._autocast():
            runner = self._traced(graph, inputs, self._traces, mask_region)
            mask_logits, peak, similarity, presence = self._run(graph, runner, inputs)
            # One device->host copy per frame: the masks and the three per-object scalars packed together.
            packed = torch.cat([mask_logits.reshape(n, -1), torch.stack([peak, similarity, presence], 1)], 1)
            host = packed.cpu().numpy()
        height, width = mask_logits.shape[1:]
        return SearchResult(
            mask_logits=host[:, : height * width].reshape(n, height, width),
            peak=host[:, -3],
            similarity=host[:, -2],
            presence=host[:, -1],
        )

    def _run(self, graph: nn.Module, runner: nn.Module, inputs: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
        """``runner(*inputs)`` (``graph`` or a trace of it), with oneDNN Graph fusion on for fused traces only.

        oneDNN Graph can refuse a graph at run time on a CPU the fusion was not measured on (round
        25, AMD Zen 4: "could not add op to the graph" for a bf16 autocast trace). A job must not
        end there: the engine turns fusion off for itself, drops its fused traces, warns once and
        runs this call on ``graph``; later calls are traced again, unfused, by the usual counts.
        """
        fused = self.fuse and runner is not graph
        try:
            with onednn_fusion(fused):
                return runner(*inputs)
        except RuntimeError as error:
            if not fused:
                raise
            self.fuse = False
            self._traces.traces.clear()
            self._embed_traces.traces.clear()
            reason = (str(error).strip().splitlines() or [type(error).__name__])[0]
            message = f"oneDNN Graph fusion failed on this machine ({reason}); running without it"
            warnings.warn(message, RuntimeWarning, stacklevel=3)
        with onednn_fusion(False):
            return graph(*inputs)

    def _traced(
        self, graph: nn.Module, inputs: tuple[torch.Tensor, ...], cache: TraceCache, variant: object = None
    ) -> nn.Module:
        """``graph`` traced for these input shapes (made at their TRACE_AFTER_USES-th use), else ``graph``.

        ``cache``: this graph's traces and counts. ``variant`` tells apart graphs that take the same
        shapes (the mask region each one bakes in).
        """
        if not self.trace:
            return graph
        key = (variant, self.fuse, *(tuple(t.shape) for t in inputs))
        traced = cache.traces.get(key)
        if traced is not None:
            cache.traces.move_to_end(key)
            return traced
        if len(cache.uses) > 64:  # a --full-frame run can see many shapes once: stay bounded
            cache.uses.clear()
        uses = cache.uses[key] = cache.uses.get(key, 0) + 1
        if not worth_tracing(uses, cache.expected, cache.min_remaining):
            return graph
        with warnings.catch_warnings():
            # The tracer's notes on Python ints taken from shapes: expected, since a trace is per shape.
            warnings.simplefilter("ignore")
            traced = torch.jit.trace(graph, inputs, check_trace=False)
            if self.fuse:  # weights as constants: what lets oneDNN Graph fuse and pre-pack them
                traced = torch.jit.freeze(traced.eval())
        cache.traces[key] = traced
        cache.uses.pop(key, None)
        if len(cache.traces) > cache.size:
            cache.traces.popitem(last=False)
        return traced
