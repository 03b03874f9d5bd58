"""How big and how fast the project's networks are, at the input sizes of their papers.

One table, a row per network, printed as it is measured (``benchmarks/table.py``;
``--json FILE`` for ``benchmarks/report.py`` and for ``loader_speed.py --gpu-rates``):
input shape per sample, parameters (M), GFLOPs per sample, and per device and variant the
ms per sample and samples/s of a forward pass (``eval()`` under ``torch.inference_mode``)
and of a training step's forward + backward (``train()``, backward of the summed logits,
gradients cleared before the clock starts). torchvision's ``r3d_18`` is the reference
row: the library's own video network, timed the same way in the same run.

Timing: the median of ``--repeats`` timed passes after one untimed warm-up; per sample =
time of the batch / batch size. On the CPU the batch is 2 for 2D networks and C3D (its
BatchNorm1d needs 2 in training), 1 for the other 3D networks, fp32, one thread per usable
core; networks above ``HEAVY_GFLOPS`` get one timed pass (they take seconds a pass on a few
cores). On a GPU the batch is larger and the run uses the project's CUDA settings
(``lightning_modules.gpu_settings``): bf16 autocast, ``cudnn.benchmark``, TF32 matmuls, with
``torch.cuda.synchronize`` bracketing every timed pass. FLOPs come from
``torch.utils.flop_counter.FlopCounterMode`` on a meta-device copy at batch 1: a
multiply-add counts as 2, and only convolutions and matrix products are counted.

Variants (``--variants``): the memory format (``channels_last``, the default: channels_last
for 2D convolutions, channels_last_3d for 3D; or ``contiguous``), ``+compiled`` for
``torch.compile`` (mode "default"). Several variants are timed with their passes
alternating, so a change in the machine's load hits them alike; the later ones get a
column of their fwd+bwd time against the first, and a compiled one its compile time (first
call minus a steady one; inductor caches its kernels on disk, so only the first run on a
machine shows the cold compile).

A second table puts the parameters of the I3D paper's compared models (its Table 1, at 400
classes) beside the paper's counts, when all of a model's networks are selected.

Run:  python benchmarks/model_speed.py                (CPU: ~10 minutes on 2 busy cores;
                                                       GPU: under 3 minutes)
      python benchmarks/model_speed.py --quick        (smoke run: 112 x 112 inputs where a
                                                       network allows, one pass)
      python benchmarks/model_speed.py --models resnet50_rgb,i3d_rgb --variants contiguous,channels_last
      python benchmarks/model_speed.py --models cnn_m_rgb --variants channels_last,channels_last+compiled
"""

from __future__ import annotations

import argparse
import copy
import os
import statistics
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import torch
import torchvision
from table import Cell, Report, add_json_option, describe_machine, progress, ratio
from torch import Tensor, nn
from torch.nn.utils import convert_conv2d_weight_memory_format, convert_conv3d_weight_memory_format
from torch.utils.flop_counter import FlopCounterMode

from models import C3D, CNNM2048, ConvNetLSTM, GoogLeNetStream, InceptionI3D, InputSpec, ResNetI3D, ResNetStream

Device = Literal["cpu", "cuda"]
MEMORY_FORMATS = ("contiguous", "channels_last")
COMPILED = "+compiled"
DEFAULT_VARIANT = "channels_last"  # the faster here (docs/benchmarks.md: --variants); cuDNN's bf16 kernels take it
GPU_MATMUL_PRECISION = "high"  # TF32 for float32 matmuls outside autocast
HEAVY_GFLOPS = 50.0  # above this, one timed pass on the CPU
QUICK_SIZE = 112  # spatial size of --quick inputs, for networks that take any size
GPU_REPEATS = 10
UCF101_CLASSES = 101  # the two-stream paper's streams
KINETICS_CLASSES = 400  # the I3D paper's networks (and its Table 1 counts)


@dataclass(frozen=True)
class Network:
    """A network of the benchmark.

    Args:
        name: its `--models` name.
        build: makes it with the given number of classes.
        default_classes: classes of its head in the speed table.
        cpu_batch: batch on the CPU.
        gpu_batch: batch on a GPU.
        fixed_size: its classifier fits only the paper's spatial size (--quick keeps it).
        shape: per-sample input shape for a network without an ``input_spec``.
    """

    name: str
    build: Callable[[int], nn.Module]
    default_classes: int = KINETICS_CLASSES
    cpu_batch: int = 1
    gpu_batch: int = 8
    fixed_size: bool = False
    shape: tuple[int, ...] | None = None


TWO_STREAM = {"default_classes": UCF101_CLASSES, "cpu_batch": 2, "gpu_batch": 64}
NETWORKS = {net.name: net for net in [
    Network("cnn_m_rgb", lambda k: CNNM2048(num_classes=k), fixed_size=True, **TWO_STREAM),
    Network("cnn_m_flow", lambda k: CNNM2048(num_classes=k, in_channels=20, modality="flow"), fixed_size=True,
            **TWO_STREAM),
    Network("resnet50_rgb", lambda k: ResNetStream(num_classes=k, depth=50), **TWO_STREAM),
    Network("resnet50_flow", lambda k: ResNetStream(num_classes=k, depth=50, in_channels=20, modality="flow"),
            **TWO_STREAM),
    Network("googlenet_rgb", lambda k: GoogLeNetStream(num_classes=k), **TWO_STREAM),
    Network("googlenet_flow", lambda k: GoogLeNetStream(num_classes=k, in_channels=20, modality="flow"),
            **TWO_STREAM),
    Network("i3d_rgb", lambda k: InceptionI3D(num_classes=k)),
    Network("i3d_flow", lambda k: InceptionI3D(num_classes=k, modality="flow")),
    Network("i3d_r50", lambda k: ResNetI3D(num_classes=k, depth=50)),
    Network("i3d_r50_nl", lambda k: ResNetI3D(num_classes=k, depth=50, non_local=True)),
    Network("convnet_lstm", lambda k: ConvNetLSTM(num_classes=k)),
    Network("c3d", lambda k: C3D(num_classes=k), cpu_batch=2, gpu_batch=32, fixed_size=True),
    Network("r3d_18", lambda k: torchvision.models.video.r3d_18(weights=None, num_classes=k), gpu_batch=32,
            shape=(3, 16, 112, 112)),
]}

# The I3D paper's Table 1: model, its parameters in millions, the networks it is made of here.
PAPER_TABLE1 = [
    ("ConvNet+LSTM", 9, ("convnet_lstm",)),
    ("3D-ConvNet", 79, ("c3d",)),
    ("Two-Stream", 12, ("googlenet_rgb", "googlenet_flow")),
    ("Two-Stream I3D", 25, ("i3d_rgb", "i3d_flow")),
]


@dataclass
class Timing:
    """Seconds per timed pass (whole batch) of one network in one variant."""

    batch: int
    forward: list[float] = field(default_factory=list)
    train_step: list[float] = field(default_factory=list)
    first_train_step: float = 0.0  # the warm-up forward + backward (with compilation, if compiled)

    def ms_per_sample(self, passes: list[float]) -> float:
        return 1000 * statistics.median(passes) / self.batch

    def samples_per_second(self, passes: list[float]) -> float:
        return self.batch / statistics.median(passes)


@dataclass(frozen=True)
class Plan:
    """What a run times: the command line resolved against the devices present."""

    models: list[str]
    devices: list[Device]
    variants: list[str]  # "channels_last", "contiguous+compiled", ...
    quick: bool
    repeats: int
    json: Path | None


@dataclass(frozen=True)
class Description:
    """What a network is, apart from its speed."""

    shapes: list[tuple[int, ...]]  # per sample, one per forward argument
    params_m: float
    gflops: float  # per sample, forward


def input_shapes(net: Network, model: nn.Module, quick: bool) -> list[tuple[int, ...]]:
    """Per-sample input shapes, one per forward argument, from the model's input spec(s)."""
    specs: list[InputSpec] = list(getattr(model, "input_specs", {}).values())
    if not specs and hasattr(model, "input_spec"):
        specs = [model.input_spec]
    if specs:
        shapes = [(s.channels, s.size, s.size) if s.dims == 2 else (s.channels, s.frames, s.size, s.size)
                  for s in specs]
    else:
        assert net.shape is not None, f"{net.name} declares no input spec and no shape"
        shapes = [net.shape]
    if quick and not net.fixed_size:
        shapes = [(*shape[:-2], QUICK_SIZE, QUICK_SIZE) for shape in shapes]
    return shapes


def parameters_m(model: nn.Module) -> float:
    return sum(p.numel() for p in model.parameters()) / 1e6


def gflops_per_sample(model: nn.Module, shapes: Sequence[tuple[int, ...]]) -> float:
    """Forward GFLOPs at batch 1 (a multiply-add = 2 FLOPs), on a meta-device copy: no compute."""
    meta = copy.deepcopy(model).to("meta").eval()
    with FlopCounterMode(display=False) as counter:
        meta(*(torch.empty(1, *shape, device="meta") for shape in shapes))
    return counter.get_total_flops() / 1e9


def describe(net: Network, quick: bool) -> Description:
    model = net.build(net.default_classes)
    shapes = input_shapes(net, model, quick)
    return Description(shapes, parameters_m(model), gflops_per_sample(model, shapes))


def memory_format(variant: str) -> str:
    return variant.removesuffix(COMPILED)


def set_memory_format(model: nn.Module, variant: str) -> None:
    """Lay the conv weights out as channels_last (2D convs) / channels_last_3d (3D convs), or contiguous;
    per tensor, so a network of both kinds (ConvNet+LSTM's 2D convs in a 3D network) gets each its own."""
    channels_last = memory_format(variant) == "channels_last"
    convert_conv2d_weight_memory_format(model, torch.channels_last if channels_last else torch.contiguous_format)
    convert_conv3d_weight_memory_format(model, torch.channels_last_3d if channels_last else torch.contiguous_format)


def make_inputs(shapes: Sequence[tuple[int, ...]], batch: int, device: Device, variant: str) -> list[Tensor]:
    inputs = []
    for shape in shapes:
        x = torch.randn(batch, *shape, device=device)
        if memory_format(variant) == "channels_last":
            x = x.contiguous(memory_format=torch.channels_last if x.dim() == 4 else torch.channels_last_3d)
        inputs.append(x)
    return inputs


def synchronize(device: Device) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def autocast(device: Device) -> torch.autocast | nullcontext:
    """bf16 autocast on a GPU; fp32 on the CPU."""
    return torch.autocast("cuda", dtype=torch.bfloat16) if device == "cuda" else nullcontext()


@contextmanager
def gpu_speed_settings() -> Iterator[None]:
    """cuDNN autotuning and TF32 float32 matmuls while timing on a GPU, restored after (they would
    change a CPU column of the same run: the matmul precision applies to the CPU too)."""
    benchmark, precision = torch.backends.cudnn.benchmark, torch.get_float32_matmul_precision()
    torch.backends.cudnn.benchmark = True
    torch.set_float32_matmul_precision(GPU_MATMUL_PRECISION)
    try:
        yield
    finally:
        torch.backends.cudnn.benchmark = benchmark
        torch.set_float32_matmul_precision(precision)


def timed(step: Callable[[], None], device: Device, prepare: Callable[[], object] = lambda: None) -> float:
    """Seconds `step` takes, after `prepare` (untimed)."""
    prepare()
    synchronize(device)
    start = time.perf_counter()
    step()
    synchronize(device)
    return time.perf_counter() - start


def time_network(net: Network, device: Device, plan: Plan, description: Description) -> list[Timing]:
    """`net`'s forward and forward + backward in each of the plan's variants (a fresh build each),
    their passes alternating."""
    progress(f"  timing {net.name} on {device}: {'; '.join(plan.variants)}")
    batch = net.cpu_batch if device == "cpu" else net.gpu_batch
    if device == "cuda":
        repeats = GPU_REPEATS
    else:
        repeats = 1 if plan.quick or description.gflops > HEAVY_GFLOPS else plan.repeats
    models, runs, inputs = [], [], []
    for variant in plan.variants:
        model = net.build(net.default_classes).to(device)
        set_memory_format(model, variant)
        models.append(model)
        runs.append(torch.compile(model) if variant.endswith(COMPILED) else model)
        inputs.append(make_inputs(description.shapes, batch, device, variant))

    def forward(k: int) -> None:
        with torch.inference_mode(), autocast(device):
            runs[k](*inputs[k])

    def train_step(k: int) -> None:
        with autocast(device):
            logits = runs[k](*inputs[k])
        logits.float().sum().backward()

    timings = [Timing(batch) for _ in plan.variants]
    with gpu_speed_settings() if device == "cuda" else nullcontext():
        for model in models:
            model.eval()
        for k in range(len(runs)):
            timed(lambda: forward(k), device)  # warm-up (and compilation)
        for _ in range(repeats):
            for k, t in enumerate(timings):
                t.forward.append(timed(lambda: forward(k), device))
        for model in models:
            model.train()
        for k, t in enumerate(timings):
            t.first_train_step = timed(lambda: train_step(k), device, models[k].zero_grad)
        for _ in range(repeats):
            for k, t in enumerate(timings):
                t.train_step.append(timed(lambda: train_step(k), device, models[k].zero_grad))
    return timings


def group_name(device: Device, variant: str, plan: Plan) -> str:
    """A column group's prefix: the device, and the variant when the run has several (``cuda fwd ms``
    is what ``loader_speed.py --gpu-rates`` reads)."""
    return device if len(plan.variants) == 1 else f"{device} {variant}"


def speed_columns(plan: Plan) -> list[str]:
    columns = ["network", "input per sample", "params (M)", "GFLOPs"]
    for device in plan.devices:
        columns.append(f"{device} batch")
        for k, variant in enumerate(plan.variants):
            group = group_name(device, variant, plan)
            columns += [f"{group} fwd ms", f"{group} fwd samples/s", f"{group} fwd+bwd ms",
                        f"{group} fwd+bwd samples/s"]
            if k:
                columns.append(f"{group} fwd+bwd time vs {plan.variants[0]}")
            if variant.endswith(COMPILED):
                columns.append(f"{group} compile s")
    return columns


def speed_cells(name: str, description: Description, timings: Sequence[Sequence[Timing]], plan: Plan) -> list:
    """A row of the speed table: ``timings`` per device of the run, per variant."""
    shapes = Cell([list(shape) for shape in description.shapes],
                  " + ".join("x".join(map(str, shape)) for shape in description.shapes))
    cells: list[object] = [name, shapes, description.params_m, description.gflops]
    for per_variant in timings:
        cells.append(per_variant[0].batch)
        first = statistics.median(per_variant[0].train_step)
        for k, (variant, t) in enumerate(zip(plan.variants, per_variant)):
            cells += [t.ms_per_sample(t.forward), t.samples_per_second(t.forward),
                      t.ms_per_sample(t.train_step), t.samples_per_second(t.train_step)]
            if k:
                cells.append(ratio(statistics.median(t.train_step) / first))
            if variant.endswith(COMPILED):
                cells.append(t.first_train_step - statistics.median(t.train_step))
    return cells


def paper_rows(names: Sequence[str]) -> list[tuple[str, str, float, int]]:
    """Parameters of the I3D paper's Table 1 models whose networks are all selected."""
    rows = []
    for model_name, paper_m, parts in PAPER_TABLE1:
        if set(parts) <= set(names):
            ours = sum(parameters_m(NETWORKS[part].build(KINETICS_CLASSES)) for part in parts)
            rows.append((model_name, " + ".join(parts), ours, paper_m))
    return rows


def plan_run(argv: Sequence[str] | None, cuda_available: bool) -> Plan:
    """The command line, resolved against whether torch sees a CUDA device."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default=",".join(NETWORKS),
                        help=f"comma-separated subset of: {', '.join(NETWORKS)}")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda", "both"), default="auto",
                        help="auto: the GPU when torch sees one, else the CPU; both: a column group for each")
    parser.add_argument("--variants", default=DEFAULT_VARIANT,
                        help=f"comma-separated memory formats ({', '.join(MEMORY_FORMATS)}), each optionally "
                             f"{COMPILED}; several are timed alternating (default {DEFAULT_VARIANT})")
    parser.add_argument("--quick", action="store_true",
                        help=f"a smoke run: {QUICK_SIZE} x {QUICK_SIZE} inputs where a network allows, one pass")
    parser.add_argument("--repeats", type=int, default=5, help="timed CPU passes (default 5)")
    add_json_option(parser)
    args = parser.parse_args(argv)
    models = [name for name in args.models.split(",") if name]
    unknown = [name for name in models if name not in NETWORKS]
    if unknown or not models:
        parser.error(f"--models: unknown network(s) {', '.join(unknown) or '(none named)'}; "
                     f"known: {', '.join(NETWORKS)}")
    variants = [variant for variant in args.variants.split(",") if variant]
    bad = [variant for variant in variants if memory_format(variant) not in MEMORY_FORMATS]
    if bad or not variants or len(set(variants)) != len(variants):
        parser.error(f"--variants: {args.variants!r}: name each of {', '.join(MEMORY_FORMATS)} (optionally "
                     f"{COMPILED}) at most once")
    if args.device in ("cuda", "both") and not cuda_available:
        parser.error(f"--device {args.device}: torch sees no CUDA device (torch.cuda.is_available() is False)")
    if args.repeats < 1:
        parser.error("--repeats must be at least 1")
    devices: list[Device] = {"cpu": ["cpu"], "cuda": ["cuda"], "both": ["cpu", "cuda"],
                             "auto": ["cuda"] if cuda_available else ["cpu"]}[args.device]
    return Plan(models, devices, variants, args.quick, 1 if args.quick else args.repeats, args.json)


def method_notes(plan: Plan) -> list[str]:
    notes = []
    if "cpu" in plan.devices:
        notes.append(f"cpu: fp32, median of {plan.repeats} timed passes (1 above {HEAVY_GFLOPS:g} GFLOPs) "
                     "after a warm-up")
    if "cuda" in plan.devices:
        notes.append(f"cuda: bf16 autocast, cudnn.benchmark, float32 matmul precision {GPU_MATMUL_PRECISION!r}, "
                     f"median of {GPU_REPEATS} timed passes after a warm-up")
    notes.append(f"variants: {', '.join(plan.variants)}. ms and samples/s are per sample (batch time / batch). "
                 "FLOPs: multiply-add = 2, convs and matmuls only, forward at batch 1.")
    return notes


def run(plan: Plan) -> None:
    threads = len(os.sched_getaffinity(0))
    torch.set_num_threads(threads)
    device_name = torch.cuda.get_device_name() if "cuda" in plan.devices else None
    report = Report("model_speed", describe_machine(device_name, torchvision=torchvision.__version__,
                                                     torch_threads=threads), plan.json)
    for note in method_notes(plan):
        report.note(note)
    title = "Networks at their papers' input sizes" + (" (--quick: reduced sizes)" if plan.quick else "")
    speed = report.table(title, speed_columns(plan))
    for name in plan.models:
        description = describe(NETWORKS[name], plan.quick)
        timings = [time_network(NETWORKS[name], device, plan, description) for device in plan.devices]
        speed.add(*speed_cells(name, description, timings, plan))
    rows = paper_rows(plan.models)
    if rows:
        table1 = report.table("Parameters of the I3D paper's Table 1 models",
                              ["I3D paper Table 1", "networks here", "params (M), 400 classes", "paper (M)"])
        for row in rows:
            table1.add(*row)
    report.finish()


def main(argv: Sequence[str] | None = None) -> int:
    run(plan_run(argv, torch.cuda.is_available()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
