"""One network to a deployable file (ONNX, TorchScript, ``torch.export``), and the file checked.

Every format starts from one graph capture, ``torch.export`` with the batch axis and, for
3D networks, the time axis symbolic (``capture``): the exporter then either keeps the axis
symbolic over the range of lengths the network computes correctly for, or refuses to, and
the axis is captured again at the example's length and reported static with the
exporter's reason. (Padding computed from ``x.shape`` with a branch is what fixes a length:
``models.inception_i3d.same_padding`` is written without one.) ONNX is written from that
capture; ``torch.export``'s ``.pt2`` is the capture itself (it refuses other shapes with
its guards); TorchScript is a trace, whose axes ``check`` confirms.

``check`` runs the written file, read back, on random inputs at two batch sizes and, for
a dynamic time axis, two lengths, against the eager network: the export is kept only when
they agree within ``TOLERANCE``; an axis the file did not follow is reported static and
the file refuses other lengths (ONNX declares them, the TorchScript file is wrapped in a
shape check).
"""

from __future__ import annotations

import contextlib
import io
from copy import deepcopy
import warnings
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal

import sympy
import torch
from torch import Tensor, nn
from torch.export import Dim, ExportedProgram
from torch.utils._sympy.numbers import int_oo

from models.input_spec import InputSpec

Format = Literal["onnx", "torchscript", "exported"]
FORMATS: tuple[Format, ...] = ("onnx", "torchscript", "exported")
SUFFIXES = {"onnx": ".onnx", "torchscript": ".pt", "exported": ".pt2"}
INPUT_NAME, OUTPUT_NAME = "x", "logits"
TOLERANCE = 1e-4  # on the outputs (logits, ``relative_difference``): float32 kernels of two runtimes


class ExportError(Exception):
    """The network cannot be exported in this format (one line: the reason)."""


@dataclass(frozen=True)
class Axis:
    """One input axis as the exported file takes it.

    Args:
        name: ``batch``, ``channels``, ``time``, ``height`` or ``width``.
        size: the one size the file takes; None: any in [``min``, ``max``].
        min: smallest size taken (dynamic axes).
        max: largest size taken (dynamic axes; None: no bound).
        reason: why an axis that could vary in a video network does not.
    """

    name: str
    size: int | None
    min: int | None = None
    max: int | None = None
    reason: str = ""

    @property
    def dynamic(self) -> bool:
        return self.size is None

    def takes(self, size: int) -> bool:
        if self.size is not None:
            return size == self.size
        return size >= (self.min or 0) and (self.max is None or size <= self.max)


def axis_names(spec: InputSpec) -> tuple[str, ...]:
    return ("batch", "channels", "time", "height", "width") if spec.dims == 3 else ("batch", "channels", "height", "width")


def input_shape(spec: InputSpec, batch: int, time: int | None = None) -> tuple[int, ...]:
    """The input shape ``spec`` declares, with ``batch`` clips (and ``time`` frames, 3D)."""
    if spec.dims == 3:
        return batch, spec.channels, spec.frames if time is None else time, spec.size, spec.size
    return batch, spec.channels, spec.size, spec.size


def _quiet() -> contextlib.AbstractContextManager:
    """The exporters' progress prints and warnings off: the command prints its own lines."""
    stack = contextlib.ExitStack()
    stack.enter_context(warnings.catch_warnings())
    warnings.simplefilter("ignore")
    stack.enter_context(contextlib.redirect_stdout(io.StringIO()))
    return stack


def capture(network: nn.Module, spec: InputSpec, static_reason: str = "") -> tuple[ExportedProgram, tuple[Axis, ...]]:
    """``network`` (eval mode) captured by ``torch.export`` with a symbolic batch and, 3D, time.

    Args:
        network: the network.
        spec: its input spec (the example input's shape).
        static_reason: capture time static at once, for this reason (a format that could
            not take the symbolic length).

    Returns:
        The program and the input's axes: the dynamic ones with the range the exporter
        proved, time static (with the reason) where it could not stay symbolic.
    """
    example = torch.randn(input_shape(spec, 2))
    dynamic: dict[int, object] = {0: Dim("batch", min=1)}
    reason = static_reason
    if spec.dims == 3 and not reason:
        try:
            with _quiet():
                program = torch.export.export(network, (example,), dynamic_shapes={INPUT_NAME: {**dynamic, 2: Dim.DYNAMIC}})
            return program, _axes(program, spec, reason)
        except Exception as error:  # noqa: BLE001 - any refusal to keep time symbolic: capture it static
            reason = f"torch.export fixes the clip length to {spec.frames} frames ({reason_line(error)})"
    try:
        with _quiet():
            program = torch.export.export(network, (example,), dynamic_shapes={INPUT_NAME: dynamic})
    except Exception as error:  # noqa: BLE001 - torch.export's many error types: one line
        raise ExportError(f"torch.export cannot capture {type(network).__name__}: {reason_line(error)}") from None
    return program, _axes(program, spec, reason)


def reason_line(error: BaseException) -> str:
    """The most telling line of an exporter's error: the innermost cause's first guard or line."""
    while error.__cause__ is not None:
        error = error.__cause__
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    guards = [line.lstrip("- ") for line in lines if line.startswith("- ")]
    text = guards[0] if guards else lines[0] if lines else type(error).__name__
    return text if len(text) <= 300 else text[:297] + "..."


def _axes(program: ExportedProgram, spec: InputSpec, reason: str) -> tuple[Axis, ...]:
    placeholder = next(node for node in program.graph.nodes if node.op == "placeholder" and node.name == INPUT_NAME)
    axes = []
    for name, size in zip(axis_names(spec), placeholder.meta["val"].shape):
        if isinstance(size, int):
            axes.append(Axis(name, size, reason=reason if name == "time" else ""))
            continue
        bounds = program.range_constraints.get(size.node.expr)
        low = int(bounds.lower) if bounds is not None else 1
        high = bounds.upper if bounds is not None else int_oo
        # The batch axis runs with one clip too (export's examples start at 2, not its graph).
        axes.append(Axis(name, None, 1 if name == "batch" else low, None if high in (int_oo, sympy.oo) else int(high)))
    return tuple(axes)


# Writing each format.

class BinnedAdaptiveMaxPool(nn.Module):
    """``nn.AdaptiveMaxPool{1,2,3}d`` as maxima over its bins, axis by axis, from slices and
    reductions ONNX has: its exporter has no translation of ``adaptive_max_pool3d`` (C3D's
    last pool), at any input size. Bin i of n inputs into o outputs spans
    [floor(i n / o), ceil((i + 1) n / o)), as in PyTorch; a box's maximum is the maximum
    along each axis in turn.

    Args:
        output_size: the pool's output size per pooled axis (None: that axis kept).
    """

    def __init__(self, output_size: tuple[int | None, ...]) -> None:
        super().__init__()
        self.output_size = output_size

    def forward(self, x: Tensor) -> Tensor:
        first = x.dim() - len(self.output_size)
        for axis, out in enumerate(self.output_size, start=first):
            if out is None:
                continue
            n = x.shape[axis]
            bins = [x.narrow(axis, i * n // out, -(-(i + 1) * n // out) - i * n // out).amax(dim=axis, keepdim=True)
                    for i in range(out)]
            x = bins[0] if out == 1 else torch.cat(bins, dim=axis)
        return x


def onnx_ready(network: nn.Module) -> nn.Module:
    """``network``, or a copy with its adaptive max pools as ``BinnedAdaptiveMaxPool`` (the same
    function; ``check`` compares the file with the original)."""
    pools = [name for name, module in network.named_modules()
             if isinstance(module, (nn.AdaptiveMaxPool1d, nn.AdaptiveMaxPool2d, nn.AdaptiveMaxPool3d))]
    if not pools:
        return network
    copy = deepcopy(network)
    for name in pools:
        pool = copy.get_submodule(name)
        size = pool.output_size
        dims = {nn.AdaptiveMaxPool1d: 1, nn.AdaptiveMaxPool2d: 2, nn.AdaptiveMaxPool3d: 3}[type(pool)]
        size = tuple(size) if isinstance(size, (tuple, list)) else (size,) * dims
        parent, _, child = name.rpartition(".")
        setattr(copy.get_submodule(parent) if parent else copy, child, BinnedAdaptiveMaxPool(size))
    return copy.eval()


def write_onnx(program: ExportedProgram, axes: tuple[Axis, ...], path: Path) -> None:
    """The program as ONNX at ``path``, its dynamic axes named (``batch``, ``time``)."""
    try:
        import onnx  # noqa: F401, PLC0415 - the export extra
        import onnxscript  # noqa: F401, PLC0415
    except ImportError as error:
        raise ExportError(f"ONNX export needs the export extra (pip install 'twostream[export]'): {error}") from None
    try:
        with _quiet():
            onnx_program = torch.onnx.export(program, input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
                                             dynamo=True, verbose=False)
    except Exception as error:  # noqa: BLE001 - the ONNX exporter's many error types: one line
        raise ExportError(f"the ONNX exporter cannot translate the graph: {reason_line(error)}") from None
    model = onnx_program.model_proto
    symbols = {}
    for axis, dim in zip(axes, model.graph.input[0].type.tensor_type.shape.dim):
        if axis.dynamic:
            symbols[dim.dim_param] = axis.name
            dim.dim_param = axis.name
    for output in model.graph.output:
        for dim in output.type.tensor_type.shape.dim:
            if dim.dim_param in symbols:
                dim.dim_param = symbols[dim.dim_param]
    import onnx  # noqa: PLC0415

    onnx.save_model(model, str(path))


class ShapeChecked(nn.Module):
    """A traced network that refuses inputs whose static axes differ from the trace's.

    Args:
        traced: the trace.
        sizes: per axis the size the trace was made for, -1 where any size runs.
        names: the axes' names, for the error.
    """

    def __init__(self, traced: nn.Module, sizes: list[int], names: list[str]) -> None:
        super().__init__()
        self.traced = traced
        self.sizes = sizes
        self.names = names

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() != len(self.sizes):
            raise RuntimeError(f"input must have {len(self.sizes)} axes ({', '.join(self.names)}), got {x.dim()}")
        for i, size in enumerate(self.sizes):
            if size >= 0 and x.shape[i] != size:
                raise RuntimeError(f"input axis {i} ({self.names[i]}) must be {size} (exported so), got {x.shape[i]}")
        return self.traced(x)


def write_torchscript(network: nn.Module, spec: InputSpec, axes: tuple[Axis, ...], path: Path) -> None:
    """A trace of ``network`` at the example's shape, refusing other sizes on its static ``axes``."""
    example = torch.randn(input_shape(spec, 2))
    try:
        with _quiet(), torch.no_grad():
            traced = torch.jit.trace(network, example, check_trace=False)
            sizes = [-1 if axis.dynamic else axis.size for axis in axes]
            scripted = torch.jit.script(ShapeChecked(traced, sizes, [axis.name for axis in axes]))
    except Exception as error:  # noqa: BLE001 - the tracer's many error types: one line
        raise ExportError(f"TorchScript cannot trace {type(network).__name__}: {reason_line(error)}") from None
    torch.jit.save(scripted, str(path))


def write_exported(program: ExportedProgram, path: Path) -> None:
    torch.export.save(program, str(path))


# Reading a file back and checking it against the eager network.

Runner = Callable[[Tensor], Tensor]


def load_runner(fmt: Format, path: Path) -> Runner | None:
    """A function running the file at ``path`` on a CPU tensor; None for ONNX without onnxruntime."""
    if fmt == "onnx":
        try:
            import onnxruntime  # noqa: PLC0415 - the export extra
        except ImportError:
            return None
        session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        return lambda x: torch.from_numpy(session.run(None, {INPUT_NAME: x.numpy()})[0])
    if fmt == "torchscript":
        module = torch.jit.load(str(path), map_location="cpu")
        return module
    module = torch.export.load(str(path)).module()
    return module


def check_shapes(spec: InputSpec, axes: tuple[Axis, ...]) -> list[tuple[int, ...]]:
    """The inputs the check runs: batch 1 and 3; for a dynamic time axis also its smallest
    length and one beyond the example's."""
    shapes = [input_shape(spec, 1), input_shape(spec, 3)]
    if spec.dims == 3 and axes[2].dynamic:
        lengths = [axes[2].min or spec.frames, spec.frames + 5]
        shapes += [input_shape(spec, 2, t) for t in lengths if axes[2].takes(t) and t != spec.frames]
    return shapes


DIFFERENCE = "max |file - PyTorch| / max(1, max |PyTorch|)"


def relative_difference(got: Tensor, expected: Tensor) -> float:
    """``DIFFERENCE``: absolute for outputs up to 1, relative to the largest beyond (float32
    keeps 7 digits of a large logit, not 4 decimals)."""
    if got.shape != expected.shape:
        return float("inf")
    return (got - expected).abs().max().item() / max(1.0, expected.abs().max().item())


@dataclass(frozen=True)
class Checked:
    """What the check ran: input shapes, the largest difference from eager PyTorch
    (``relative_difference``), or why it did not run."""

    shapes: list[tuple[int, ...]]
    max_diff: float | None
    skipped: str = ""


def check(network: nn.Module, spec: InputSpec, fmt: Format, path: Path, axes: tuple[Axis, ...],
          seed: int = 0) -> Checked:
    """The file at ``path`` against ``network`` on random inputs of the declared shapes.

    Raises:
        ExportError: an output differs by more than ``TOLERANCE``, or a shape the file
            declares it takes does not run.
    """
    runner = load_runner(fmt, path)
    shapes = check_shapes(spec, axes)
    if runner is None:
        return Checked(shapes, None, "onnxruntime is not installed (pip install 'twostream[export]')")
    generator = torch.Generator().manual_seed(seed)
    worst = 0.0
    for shape in shapes:
        x = torch.randn(shape, generator=generator)
        with torch.no_grad():
            expected = network(x)
            try:
                got = runner(x)
            except Exception as error:  # noqa: BLE001 - runtimes' many error types: one line
                raise ExportError(f"the {fmt} file does not run an input of shape {list(shape)} it declares it "
                                  f"takes: {reason_line(error)}") from None
        difference = relative_difference(got, expected)
        if not difference <= TOLERANCE:
            raise ExportError(f"the {fmt} file's output differs from PyTorch's by {difference:.3g} (> {TOLERANCE}, "
                              f"{DIFFERENCE}) on an input of shape {list(shape)}")
        worst = max(worst, difference)
    return Checked(shapes, worst)


def static_time(axes: tuple[Axis, ...], spec: InputSpec, reason: str) -> tuple[Axis, ...]:
    """``axes`` with time fixed to the example's length."""
    return tuple(replace(axis, size=spec.frames, min=None, max=None, reason=reason) if axis.name == "time" else axis
                 for axis in axes)


def calibrate_batch_norm(network: nn.Module, spec: InputSpec, batch: int = 2, seed: int = 0) -> nn.Module:
    """``network`` (random weights, eval mode on return) with batch-norm statistics of random
    inputs of ``spec``'s shape, as a trained network has statistics of its activations.

    A freshly initialised network's statistics (mean 0, variance 1) do not match its
    activations: GoogLeNet's small initial weights then give the same logits for every
    input, and a check comparing two runtimes on them would compare constants.
    """
    norms = [m for m in network.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    momenta = [norm.momentum for norm in norms]
    for norm in norms:
        norm.reset_running_stats()
        norm.momentum = None  # the cumulative average of the batches seen
    generator = torch.Generator().manual_seed(seed)
    network.train()
    with torch.no_grad():
        network(torch.randn(input_shape(spec, batch), generator=generator))
    for norm, momentum in zip(norms, momenta):
        norm.momentum = momentum
    return network.eval()

