"""How big and how fast the project's networks are, at the input sizes of their papers.

Prints markdown tables (docs/benchmarks.md, through ``benchmarks/report.py``), each row as soon as it is measured;
times and rates at 3 significant digits; ``--json FILE`` writes the same tables unrounded
with the machine they ran on (``benchmarks/table.py``):

1. Per network: input shape per sample, parameters (M), GFLOPs per sample, and per device
   the ms per sample and samples/s of a forward pass (``eval()`` under
   ``torch.inference_mode``) and of a training step's forward + backward (``train()``,
   backward of the summed logits, gradients cleared before the clock starts). Each time is
   the median of a few timed repeats after one untimed warm-up; per sample = time of the
   batch / batch size. On the CPU the batch is 2 for 2D networks and C3D (its BatchNorm1d
   needs 2 in training), 1 for the other 3D networks, fp32, with ``torch.set_num_threads``
   set to the cores available; networks above ``HEAVY_GFLOPS`` get fewer repeats (they take
   seconds a pass on a few cores). On a GPU the batch is larger and the run uses the fast
   settings that are the project's defaults on CUDA: bf16 autocast, channels_last /
   channels_last_3d, ``cudnn.benchmark = True`` and float32 matmul precision "high" (TF32),
   with ``torch.cuda.synchronize`` bracketing every timed pass.
   FLOPs come from ``torch.utils.flop_counter.FlopCounterMode`` on a meta-device copy at
   batch 1: a multiply-add counts as 2 FLOPs, and only convolutions and matrix products
   are counted (normalisation, pooling and activations are not).
2. Memory format: contiguous against channels_last (2D) / channels_last_3d (3D), passes
   alternating, for ``--compare-formats`` (CPU default: ResNet-50 RGB and Inception I3D RGB).
3. torch.compile (mode "default") against eager on ``--compile-probe`` (CPU default: one
   small network, not in --quick), with the compile time (first call minus a steady call;
   inductor caches its kernels on disk, so only the first run on a machine shows the cold
   compile time).
4. Parameters of the I3D paper's compared models (its Table 1) beside the paper's counts,
   at 400 classes; printed when all of a model's networks are selected.

Devices: ``--device auto`` (the default) times on the GPU when torch sees one, else on the
CPU; ``both`` times on each. Tables 2 and 3 are opt-in on a GPU (name the networks with
``--compare-formats`` / ``--compile-probe``), so the default GPU run stays within a few
minutes. The CPU defaults are what measured faster here (2 shared CPU cores):
``DEFAULT_FORMAT``, eager rather than compiled (``--compile`` compiles every network).

Run:  python benchmarks/model_speed.py                   (CPU: 10-15 minutes on 2 busy cores;
                                                          GPU: the speed table, under 3 minutes)
      python benchmarks/model_speed.py --quick           (a smoke run: 112 x 112 inputs where
                                                          a network allows, one repeat)
      python benchmarks/model_speed.py --models i3d_rgb,c3d --device both --json speed.json
      python benchmarks/model_speed.py --compare-formats resnet50_rgb --compile-probe cnn_m_rgb  (on a GPU)
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
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal

import torch
import torchvision
from table import Cell, Report, add_json_option, describe_machine, joined, progress
from torch import Tensor, nn
from torch.nn.utils import (
    convert_conv2d_weight_memory_format,
    convert_conv3d_weight_memory_format,
)
from torch.utils.flop_counter import FlopCounterMode

from models import (
    C3D,
    CNNM2048,
    ConvNetLSTM,
    GoogLeNetStream,
    InceptionI3D,
    InputSpec,
    ResNetI3D,
    ResNetStream,
)

Device = Literal["cpu", "cuda"]
MemoryFormat = Literal["contiguous", "channels_last"]

# CPU: channels_last measured faster in the full run (fwd+bwd ~1.4x on ResNet-50 and I3D); on a GPU
# channels_last is what cuDNN's bf16 tensor-core kernels take without a transpose.
DEFAULT_FORMAT: dict[Device, MemoryFormat] = {"cpu": "channels_last", "cuda": "channels_last"}
# Tables 2 and 3 by default on a CPU-only run; on a GPU they are opt-in (the compile probe and the
# second layout took most of a 150 s default run on an H200).
CPU_COMPARE_FORMATS = ("resnet50_rgb", "i3d_rgb")
CPU_COMPILE_PROBE = "cnn_m_rgb"
GPU_MATMUL_PRECISION = "high"  # TF32 for float32 matmuls outside autocast
HEAVY_GFLOPS = 50.0  # above this, a network gets `heavy_repeats` timed repeats on the CPU
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


@dataclass(frozen=True)
class Variant:
    """One way of running a network."""

    memory_format: MemoryFormat
    compiled: bool

    def __str__(self) -> str:
        return self.memory_format + (", compiled" if self.compiled else "")


@dataclass
class Timing:
    """Seconds per timed pass (whole batch) of one network in one variant."""

    batch: int
    forward: list[float] = field(default_factory=list)
    train_step: list[float] = field(default_factory=list)
    first_calls: tuple[float, float] = (0.0, 0.0)  # warm-up forward, warm-up forward + backward

    def ms_per_sample(self, passes: list[float]) -> float:
        return 1000 * statistics.median(passes) / self.batch

    def samples_per_second(self, passes: list[float]) -> float:
        return self.batch / statistics.median(passes)

    def compile_s(self) -> tuple[float, float]:
        """First call minus a steady one, forward and forward + backward."""
        return (self.first_calls[0] - statistics.median(self.forward),
                self.first_calls[1] - statistics.median(self.train_step))


@dataclass(frozen=True)
class Settings:
    """How the networks are timed in this run."""

    quick: bool
    repeats: int
    heavy_repeats: int


@dataclass(frozen=True)
class Plan:
    """What a run times: the command line resolved against the devices present."""

    models: list[str]
    devices: list[Device]
    defaults: dict[Device, Variant]  # the speed table's variant per device
    compare: list[str]  # networks of the memory-format table
    probe: list[str]  # the compile probe's network (zero or one)
    settings: Settings
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


def set_memory_format(model: nn.Module, memory_format: MemoryFormat) -> None:
    """Lay the conv weights out as channels_last (2D convs) / channels_last_3d (3D convs), or contiguous.

    Networks with both kinds (the fused two-stream) get each kind its own layout.
    """
    channels_last = memory_format == "channels_last"
    convert_conv2d_weight_memory_format(model, torch.channels_last if channels_last else torch.contiguous_format)
    convert_conv3d_weight_memory_format(model, torch.channels_last_3d if channels_last else torch.contiguous_format)


def make_inputs(shapes: Sequence[tuple[int, ...]], batch: int, device: Device,
                memory_format: MemoryFormat) -> list[Tensor]:
    inputs = []
    for shape in shapes:
        x = torch.randn(batch, *shape, device=device)
        if memory_format == "channels_last":
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


def time_network(net: Network, device: Device, variants: Sequence[Variant], settings: Settings,
                 description: Description) -> dict[Variant, Timing]:
    """Time `net`'s forward and forward + backward in each variant (a fresh build each).

    The variants' passes alternate, so a change in the machine's load hits them alike.
    """
    progress(f"  timing {net.name} on {device}: {'; '.join(map(str, variants))}")
    with gpu_speed_settings() if device == "cuda" else nullcontext():
        return _time_variants(net, device, variants, settings, description)


def _time_variants(net: Network, device: Device, variants: Sequence[Variant], settings: Settings,
                   description: Description) -> dict[Variant, Timing]:
    batch = net.cpu_batch if device == "cpu" else net.gpu_batch
    models, runs, inputs = [], [], []
    for variant in variants:
        model = net.build(net.default_classes).to(device)
        set_memory_format(model, variant.memory_format)
        models.append(model)
        runs.append(torch.compile(model) if variant.compiled else model)
        inputs.append(make_inputs(description.shapes, batch, device, variant.memory_format))
    if device == "cuda":
        repeats = GPU_REPEATS
    elif settings.quick:
        repeats = 1
    elif description.gflops > HEAVY_GFLOPS:
        repeats = settings.heavy_repeats
    else:
        repeats = settings.repeats

    def forward(k: int) -> None:
        with torch.inference_mode(), autocast(device):
            runs[k](*inputs[k])

    def train_step(k: int) -> None:
        with autocast(device):
            logits = runs[k](*inputs[k])
        logits.float().sum().backward()

    timings = [Timing(batch) for _ in variants]
    for model in models:
        model.eval()
    first_forward = [timed(lambda: forward(k), device) for k in range(len(variants))]  # warm-up, compilation
    for _ in range(repeats):
        for k, t in enumerate(timings):
            t.forward.append(timed(lambda: forward(k), device))
    for model in models:
        model.train()
    first_train = [timed(lambda: train_step(k), device, models[k].zero_grad) for k in range(len(variants))]
    for _ in range(repeats):
        for k, t in enumerate(timings):
            t.train_step.append(timed(lambda: train_step(k), device, models[k].zero_grad))
    for k, t in enumerate(timings):
        t.first_calls = (first_forward[k], first_train[k])
    return dict(zip(variants, timings))


def speed_columns(devices: Sequence[Device]) -> list[str]:
    columns = ["network", "input per sample", "params (M)", "GFLOPs"]
    for device in devices:
        columns += [f"{device} batch", f"{device} fwd ms", f"{device} fwd samples/s", f"{device} fwd+bwd ms",
                    f"{device} fwd+bwd samples/s"]
    return columns


def speed_cells(name: str, description: Description, timings: Sequence[Timing]) -> list[object]:
    """A row of the speed table: ``timings`` has one entry per device of the run."""
    shapes = Cell([list(shape) for shape in description.shapes],
                  " + ".join("x".join(map(str, shape)) for shape in description.shapes))
    cells: list[object] = [name, shapes, description.params_m, description.gflops]
    for t in timings:
        cells += [t.batch, t.ms_per_sample(t.forward), t.samples_per_second(t.forward),
                  t.ms_per_sample(t.train_step), t.samples_per_second(t.train_step)]
    return cells


def paper_rows(names: Sequence[str]) -> list[tuple[str, str, float, int]]:
    """Parameters of the I3D paper's Table 1 models whose networks are all selected."""
    rows = []
    for model_name, paper_m, parts in PAPER_TABLE1:
        if set(parts) <= set(names):
            ours = sum(parameters_m(NETWORKS[part].build(KINETICS_CLASSES)) for part in parts)
            rows.append((model_name, " + ".join(parts), ours, paper_m))
    return rows


def network_names(parser: argparse.ArgumentParser, option: str, value: str) -> list[str]:
    names = [name for name in value.split(",") if name]
    unknown = [name for name in names if name not in NETWORKS]
    if unknown:
        parser.error(f"{option}: unknown network(s) {', '.join(unknown)}; known: {', '.join(NETWORKS)}")
    return names


def plan_run(argv: Sequence[str] | None, cuda_available: bool) -> Plan:
    """The command line, resolved against whether torch sees a CUDA device."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default=",".join(NETWORKS),
                        help=f"comma-separated subset of: {', '.join(NETWORKS)}")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda", "both"), default="auto",
                        help="auto: the GPU when torch sees one, else the CPU; both: a column group for each")
    parser.add_argument("--quick", action="store_true",
                        help=f"a smoke run: {QUICK_SIZE} x {QUICK_SIZE} inputs where a network allows, one repeat")
    parser.add_argument("--repeats", type=int, default=5, help="timed CPU repeats (default 5)")
    parser.add_argument("--heavy-repeats", type=int, default=1,
                        help=f"timed CPU repeats above {HEAVY_GFLOPS:g} GFLOPs (default 1)")
    parser.add_argument("--memory-format", choices=("contiguous", "channels_last"),
                        help="layout of the speed table on every device; default per device: "
                             + ", ".join(f"{d} {f}" for d, f in DEFAULT_FORMAT.items()))
    parser.add_argument("--compile", action="store_true", help="torch.compile every network of the speed table")
    parser.add_argument("--compare-formats",
                        help="networks timed in both memory formats (those selected; empty for none); default: "
                             f"{','.join(CPU_COMPARE_FORMATS)} on a CPU-only run, none when the run uses a GPU")
    parser.add_argument("--compile-probe",
                        help="a network timed eager and compiled (if selected; skipped by --quick; empty for "
                             f"none); default: {CPU_COMPILE_PROBE} on a CPU-only run, none when the run uses a GPU")
    add_json_option(parser)
    args = parser.parse_args(argv)
    models = network_names(parser, "--models", args.models)
    if not models:
        parser.error("--models names no network")
    if args.device in ("cuda", "both") and not cuda_available:
        parser.error(f"--device {args.device}: torch sees no CUDA device (torch.cuda.is_available() is False)")
    devices: list[Device] = {"cpu": ["cpu"], "cuda": ["cuda"], "both": ["cpu", "cuda"],
                             "auto": ["cuda"] if cuda_available else ["cpu"]}[args.device]
    gpu = "cuda" in devices
    compare = network_names(parser, "--compare-formats", args.compare_formats if args.compare_formats is not None
                            else "" if gpu else ",".join(CPU_COMPARE_FORMATS))
    probe = network_names(parser, "--compile-probe", args.compile_probe if args.compile_probe is not None
                          else "" if gpu else CPU_COMPILE_PROBE)
    if len(probe) > 1:
        parser.error("--compile-probe takes one network")
    for option, value in (("--repeats", args.repeats), ("--heavy-repeats", args.heavy_repeats)):
        if value < 1:
            parser.error(f"{option} must be at least 1")
    return Plan(
        models=models,
        devices=devices,
        defaults={device: Variant(args.memory_format or DEFAULT_FORMAT[device], args.compile) for device in devices},
        compare=[name for name in compare if name in models],
        probe=[name for name in probe if name in models and not args.quick],
        settings=Settings(args.quick, 1 if args.quick else args.repeats, 1 if args.quick else args.heavy_repeats),
        json=args.json,
    )


def method_notes(plan: Plan) -> list[str]:
    notes = []
    if "cpu" in plan.devices:
        notes.append(f"cpu: fp32, {plan.defaults['cpu']}, median of {plan.settings.repeats} timed passes "
                     f"({plan.settings.heavy_repeats} above {HEAVY_GFLOPS:g} GFLOPs) after a warm-up")
    if "cuda" in plan.devices:
        notes.append(f"cuda: bf16 autocast, {plan.defaults['cuda']}, cudnn.benchmark, float32 matmul precision "
                     f"{GPU_MATMUL_PRECISION!r}, median of {GPU_REPEATS} timed passes after a warm-up")
    notes.append("ms and samples/s are per sample (batch time / batch). FLOPs: multiply-add = 2, convs and matmuls "
                 "only, forward at batch 1.")
    return notes


def run(plan: Plan) -> None:
    threads = len(os.sched_getaffinity(0))
    torch.set_num_threads(threads)
    device_name = torch.cuda.get_device_name() if "cuda" in plan.devices else None
    report = Report("model_speed", describe_machine(device_name, torchvision=torchvision.__version__,
                                                     torch_threads=threads), plan.json)
    for note in method_notes(plan):
        report.note(note)
    descriptions: dict[str, Description] = {}

    title = "Networks at their papers' input sizes" + (" (--quick: reduced sizes)" if plan.settings.quick else "")
    speed = report.table(title, speed_columns(plan.devices))
    for name in plan.models:
        descriptions[name] = description = describe(NETWORKS[name], plan.settings.quick)
        timings = [time_network(NETWORKS[name], device, [plan.defaults[device]], plan.settings, description)
                   [plan.defaults[device]] for device in plan.devices]
        speed.add(*speed_cells(name, description, timings))

    if plan.compare:
        formats = report.table(
            "Memory format: contiguous vs channels_last (2D) / channels_last_3d (3D), passes alternating",
            ["network", "device", "fwd ms contiguous", "fwd ms channels_last",
             "fwd+bwd ms contiguous", "fwd+bwd ms channels_last"])
        for name in plan.compare:
            for device in plan.devices:
                compiled = plan.defaults[device].compiled
                variants = [Variant("contiguous", compiled), Variant("channels_last", compiled)]
                plain, last = time_network(NETWORKS[name], device, variants, plan.settings,
                                           descriptions[name]).values()
                formats.add(name, device, plain.ms_per_sample(plain.forward), last.ms_per_sample(last.forward),
                            plain.ms_per_sample(plain.train_step), last.ms_per_sample(last.train_step))

    for name in plan.probe:
        probe = report.table('torch.compile (mode "default") vs eager, passes alternating; '
                             "compile s = first call minus a steady one",
                             ["network", "device", "compile s fwd / fwd+bwd", "fwd ms eager", "fwd ms compiled",
                              "fwd+bwd ms eager", "fwd+bwd ms compiled"])
        for device in plan.devices:
            variants = [replace(plan.defaults[device], compiled=compiled) for compiled in (False, True)]
            eager, built = time_network(NETWORKS[name], device, variants, plan.settings, descriptions[name]).values()
            probe.add(name, device, joined(built.compile_s(), " / "), eager.ms_per_sample(eager.forward),
                      built.ms_per_sample(built.forward), eager.ms_per_sample(eager.train_step),
                      built.ms_per_sample(built.train_step))

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
