"""How big and how fast the project's networks are, at the input sizes of their papers.

Prints markdown tables (they paste into the README):

1. Per network: input shape per sample, parameters (M), GFLOPs per sample, and ms per
   sample of a forward pass (``eval()`` under ``torch.inference_mode``) and of a training
   step's forward + backward (``train()``, backward of the summed logits, gradients
   cleared before the clock starts). Each time is the median of a few timed repeats after
   one untimed warm-up; per sample = time of the batch / batch size. On the CPU the batch
   is 2 for 2D networks and C3D (its BatchNorm1d needs 2 in training), 1 for the other
   3D networks, with ``torch.set_num_threads`` set to the cores available; networks above
   ``HEAVY_GFLOPS`` get fewer repeats (they take seconds a pass on a few cores). On a GPU
   (whenever ``torch.cuda.is_available()``) the batch is larger, the passes run under
   bf16 autocast, and ``torch.cuda.synchronize`` brackets every timed pass.
   FLOPs come from ``torch.utils.flop_counter.FlopCounterMode`` on a meta-device copy at
   batch 1: a multiply-add counts as 2 FLOPs, and only convolutions and matrix products
   are counted (normalisation, pooling and activations are not).
2. Memory format: contiguous against channels_last (2D) / channels_last_3d (3D), both
   measured in the same run, for ``--compare-formats`` (ResNet-50 RGB and Inception I3D
   RGB by default).
3. torch.compile (mode "default") against eager on ``--compile-probe`` (one small network
   in the full run), with the compile time (first call minus a steady call; inductor caches
   its kernels on disk, so only the first run on a machine shows the cold compile time).
4. Parameters of the I3D paper's compared models (its Table 1) beside the paper's counts,
   at 400 classes; printed when all of a model's networks are selected.

The defaults are what measured faster here (2 shared CPU cores): ``DEFAULT_FORMAT``
for the CPU, eager rather than compiled (``--compile`` compiles every network).

Run:  python benchmarks/model_speed.py                   (full, 10-15 minutes on 2 busy cores)
      python benchmarks/model_speed.py --quick           (a smoke run: 112 x 112 inputs where
                                                          a network allows, one repeat)
      python benchmarks/model_speed.py --models i3d_rgb,c3d --device cuda
"""

from __future__ import annotations

import argparse
import copy
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field, replace
from typing import Literal

import torch
import torchvision
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
    FusedTwoStream3D,
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
    Network("fused_two_stream", lambda k: FusedTwoStream3D(num_classes=k)),
    Network("r3d_18", lambda k: torchvision.models.video.r3d_18(weights=None, num_classes=k), gpu_batch=32,
            shape=(3, 16, 112, 112)),
]}

# The I3D paper's Table 1: model, its parameters in millions, the networks it is made of here.
PAPER_TABLE1 = [
    ("ConvNet+LSTM", 9, ("convnet_lstm",)),
    ("3D-ConvNet", 79, ("c3d",)),
    ("Two-Stream", 12, ("googlenet_rgb", "googlenet_flow")),
    ("3D-Fused Two-Stream", 39, ("fused_two_stream",)),
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

    def compile_s(self) -> tuple[float, float]:
        """First call minus a steady one, forward and forward + backward."""
        return (self.first_calls[0] - statistics.median(self.forward),
                self.first_calls[1] - statistics.median(self.train_step))


Results = dict[tuple[str, Device], dict[Variant, Timing]]  # (network, device) -> its timings


@dataclass(frozen=True)
class Settings:
    """How the networks are timed in this run."""

    quick: bool
    repeats: int
    heavy_repeats: int


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


def timed(step: Callable[[], None], device: Device, prepare: Callable[[], object] = lambda: None) -> float:
    """Seconds `step` takes, after `prepare` (untimed)."""
    prepare()
    synchronize(device)
    start = time.perf_counter()
    step()
    synchronize(device)
    return time.perf_counter() - start


def time_network(net: Network, device: Device, variants: Sequence[Variant],
                 settings: Settings) -> dict[Variant, Timing]:
    """Time `net`'s forward and forward + backward in each variant (a fresh build each).

    The variants' passes alternate, so a change in the machine's load hits them alike.
    """
    batch = net.cpu_batch if device == "cpu" else net.gpu_batch
    models, runs, inputs = [], [], []
    for variant in variants:
        model = net.build(net.default_classes).to(device)
        shapes = input_shapes(net, model, settings.quick)
        set_memory_format(model, variant.memory_format)
        models.append(model)
        runs.append(torch.compile(model) if variant.compiled else model)
        inputs.append(make_inputs(shapes, batch, device, variant.memory_format))
    if device == "cuda":
        repeats = GPU_REPEATS
    elif settings.quick:
        repeats = 1
    elif gflops_per_sample(models[0], shapes) > HEAVY_GFLOPS:
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


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def ms(value: float) -> str:
    return f"{value:,.1f}" if value < 100 else f"{value:,.0f}"


def speed_table(names: Sequence[str], devices: Sequence[Device], defaults: dict[Device, Variant],
                results: Results, quick: bool) -> str:
    header = ["network", "input per sample", "params (M)", "GFLOPs"]
    for device in devices:
        header += [f"{device} batch", f"{device} fwd ms", f"{device} fwd+bwd ms"]
    rows = []
    for name in names:
        net = NETWORKS[name]
        model = net.build(net.default_classes)
        shapes = input_shapes(net, model, quick)
        row = [name, " + ".join("x".join(map(str, shape)) for shape in shapes),
               f"{parameters_m(model):.1f}", f"{gflops_per_sample(model, shapes):.1f}"]
        for device in devices:
            t = results[name, device][defaults[device]]
            row += [str(t.batch), ms(t.ms_per_sample(t.forward)), ms(t.ms_per_sample(t.train_step))]
        rows.append(row)
    return markdown_table(header, rows)


def format_table(names: Sequence[str], devices: Sequence[Device], compiled: bool, results: Results) -> str:
    header = ["network", "device", "fwd ms contiguous", "fwd ms channels_last",
              "fwd+bwd ms contiguous", "fwd+bwd ms channels_last"]
    rows = []
    for name in names:
        for device in devices:
            plain = results[name, device][Variant("contiguous", compiled)]
            last = results[name, device][Variant("channels_last", compiled)]
            rows.append([name, device, ms(plain.ms_per_sample(plain.forward)), ms(last.ms_per_sample(last.forward)),
                         ms(plain.ms_per_sample(plain.train_step)), ms(last.ms_per_sample(last.train_step))])
    return markdown_table(header, rows)


def compile_table(name: str, devices: Sequence[Device], defaults: dict[Device, Variant], results: Results) -> str:
    header = ["network", "device", "compile s fwd / fwd+bwd", "fwd ms eager", "fwd ms compiled",
              "fwd+bwd ms eager", "fwd+bwd ms compiled"]
    rows = []
    for device in devices:
        eager = results[name, device][replace(defaults[device], compiled=False)]
        built = results[name, device][replace(defaults[device], compiled=True)]
        compile_fwd, compile_train = built.compile_s()
        rows.append([name, device, f"{compile_fwd:.0f} / {compile_train:.0f}",
                     ms(eager.ms_per_sample(eager.forward)), ms(built.ms_per_sample(built.forward)),
                     ms(eager.ms_per_sample(eager.train_step)), ms(built.ms_per_sample(built.train_step))])
    return markdown_table(header, rows)


def paper_table(names: Sequence[str]) -> str | None:
    """Parameters of the I3D paper's Table 1 models whose networks are all selected."""
    rows = []
    for model_name, paper_m, parts in PAPER_TABLE1:
        if set(parts) <= set(names):
            ours = sum(parameters_m(NETWORKS[part].build(KINETICS_CLASSES)) for part in parts)
            rows.append([model_name, " + ".join(parts), f"{ours:.1f}", str(paper_m)])
    if not rows:
        return None
    return markdown_table(["I3D paper Table 1", "networks here", "params (M), 400 classes", "paper (M)"], rows)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default=",".join(NETWORKS),
                        help=f"comma-separated subset of: {', '.join(NETWORKS)}")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto",
                        help="auto: the CPU, and a GPU when one is available")
    parser.add_argument("--quick", action="store_true",
                        help=f"a smoke run: {QUICK_SIZE} x {QUICK_SIZE} inputs where a network allows, one repeat")
    parser.add_argument("--repeats", type=int, default=5, help="timed CPU repeats (default 5)")
    parser.add_argument("--heavy-repeats", type=int, default=1,
                        help=f"timed CPU repeats above {HEAVY_GFLOPS:g} GFLOPs (default 1)")
    parser.add_argument("--memory-format", choices=("contiguous", "channels_last"),
                        help="layout of the speed table on every device; default per device: "
                             + ", ".join(f"{d} {f}" for d, f in DEFAULT_FORMAT.items()))
    parser.add_argument("--compile", action="store_true", help="torch.compile every network of the speed table")
    parser.add_argument("--compare-formats", default="resnet50_rgb,i3d_rgb",
                        help="networks timed in both memory formats (those selected; empty for none)")
    parser.add_argument("--compile-probe", default="cnn_m_rgb",
                        help="a network timed eager and compiled (if selected; skipped by --quick; empty for none)")
    args = parser.parse_args(argv)
    for option in ("models", "compare_formats", "compile_probe"):
        names = [name for name in getattr(args, option).split(",") if name]
        if option == "compile_probe" and len(names) > 1:
            parser.error("--compile-probe takes one network")
        unknown = [name for name in names if name not in NETWORKS]
        if unknown:
            parser.error(f"unknown network(s) {', '.join(unknown)}; known: {', '.join(NETWORKS)}")
        setattr(args, option, names)
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    threads = len(os.sched_getaffinity(0))
    torch.set_num_threads(threads)
    devices: list[Device] = [] if args.device == "cuda" else ["cpu"]
    gpu_note = None
    if args.device != "cpu":
        if torch.cuda.is_available():
            devices.append("cuda")
            torch.backends.cudnn.benchmark = True
        else:
            gpu_note = "no CUDA device: the GPU columns are skipped"
    defaults = {device: Variant(args.memory_format or DEFAULT_FORMAT[device], args.compile) for device in devices}
    settings = Settings(args.quick, 1 if args.quick else args.repeats, 1 if args.quick else args.heavy_repeats)
    compare = [name for name in args.compare_formats if name in args.models]
    probe = [name for name in args.compile_probe if name in args.models and not args.quick]  # zero or one

    results: Results = {}
    for name in args.models:
        for device in devices:
            variants = {defaults[device]}
            if name in compare:
                variants |= {Variant(memory_format, args.compile) for memory_format in ("contiguous", "channels_last")}
            if name in probe:
                variants |= {replace(defaults[device], compiled=compiled) for compiled in (False, True)}
            ordered = sorted(variants, key=str)
            print(f"  timing {name} on {device}: {'; '.join(map(str, ordered))}", file=sys.stderr, flush=True)
            results[name, device] = time_network(NETWORKS[name], device, ordered, settings)

    print(f"torch {torch.__version__}, {platform.processor() or platform.machine()}, {threads} CPU threads"
          + "".join(f", {torch.cuda.get_device_name()}" for device in devices if device == "cuda"))
    if gpu_note:
        print(gpu_note)
    print(f"CPU: fp32, median of {settings.repeats} timed passes ({settings.heavy_repeats} above "
          f"{HEAVY_GFLOPS:g} GFLOPs) after a warm-up; GPU: bf16 autocast, median of {GPU_REPEATS}. "
          "ms are per sample. FLOPs: multiply-add = 2, convs and matmuls only, forward at batch 1.")
    print()
    print("### Networks at their papers' input sizes" + (" (--quick: reduced sizes)" if args.quick else ""))
    print()
    if defaults:
        print("(" + "; ".join(f"{device}: {variant}" for device, variant in defaults.items()) + ")")
        print()
    print(speed_table(args.models, devices, defaults, results, args.quick))
    if compare and devices:
        print()
        print("### Memory format: contiguous vs channels_last (2D) / channels_last_3d (3D), passes alternating")
        print()
        print(format_table(compare, devices, args.compile, results))
    if probe and devices:
        print()
        print('### torch.compile (mode "default") vs eager, passes alternating; '
              "compile s = first call minus a steady one")
        print()
        print(compile_table(probe[0], devices, defaults, results))
    table1 = paper_table(args.models)
    if table1:
        print()
        print("### Parameters of the I3D paper's Table 1 models")
        print()
        print(table1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
