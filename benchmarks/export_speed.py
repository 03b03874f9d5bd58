"""ONNX Runtime against PyTorch on the CPU: ms per clip of each network, exported as
``cli.py export`` exports it.

One table, a row per network (``model_speed.py``'s networks, at their papers' input sizes),
printed as it is measured (``benchmarks/table.py``; ``--json FILE`` for
``benchmarks/report.py``): the input, the export's seconds (``torch.export`` capture with a
dynamic batch and time, ONNX translation: ``inference.exporters``), the ms per clip of the
eager network (``eval()`` under ``torch.inference_mode``, contiguous fp32: the bare library
call) and of an ONNX Runtime CPU session on the same input, their ratio, and the largest
difference of the outputs (``inference.exporters.relative_difference``). Random weights
(speed does not depend on them) with batch-norm statistics of random inputs
(``calibrate_batch_norm``), so that the outputs depend on the input.

Timing: batch 1, the median of ``--repeats`` passes after one untimed warm-up each, the
two runtimes' passes alternating so that a change in the machine's load hits both alike;
both get ``--threads`` threads (default: the usable cores).

Run:  python benchmarks/export_speed.py                       (CPU: ~15 minutes on 2 cores)
      python benchmarks/export_speed.py --threads 1            (a machine other jobs load)
      python benchmarks/export_speed.py --models i3d_rgb,c3d --repeats 3
      python benchmarks/export_speed.py --quick               (smoke run: 64 x 64, 8 frames, one pass)
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import torch
from model_speed import NETWORKS
from table import Report, add_json_option, describe_machine, progress, ratio, shape
from torch import nn

from inference.exporters import (calibrate_batch_norm, capture, input_shape, onnx_ready, relative_difference,
                                 write_onnx)

QUICK_SIZE, QUICK_FRAMES = 64, 8
# Every network of model_speed.py that has an input spec (torchvision's r3d_18 is its reference, not ours).
DEFAULT_MODELS = [name for name in NETWORKS if name != "r3d_18"]


def usable_cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def build(name: str, quick: bool) -> nn.Module:
    """The network at its paper's input (``--quick``: 64 x 64 and 8 frames where it takes them)."""
    network = NETWORKS[name]
    model = network.build(network.default_classes)
    if quick:
        spec = model.input_spec
        size = spec.size if network.fixed_size else QUICK_SIZE
        frames = min(spec.frames, QUICK_FRAMES) if spec.dims == 3 and name != "c3d" else spec.frames
        model.input_spec = replace(spec, size=size, frames=frames)
    # Outputs that depend on the input, as a trained network's, for the difference column.
    return calibrate_batch_norm(model, model.input_spec)


def time_both(model: nn.Module, session, x: torch.Tensor, repeats: int) -> tuple[float, float, float]:
    """Median seconds per pass of PyTorch and ONNX Runtime (alternating), and their outputs' difference."""
    feed = {"x": x.numpy()}
    with torch.inference_mode():
        expected = model(x)  # the warm-ups
    got = torch.from_numpy(session.run(None, feed)[0])
    torch_times, ort_times = [], []
    for _ in range(repeats):
        with torch.inference_mode():
            started = time.perf_counter()
            model(x)
            torch_times.append(time.perf_counter() - started)
        started = time.perf_counter()
        session.run(None, feed)
        ort_times.append(time.perf_counter() - started)
    return statistics.median(torch_times), statistics.median(ort_times), relative_difference(got, expected)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default=",".join(DEFAULT_MODELS),
                        help=f"comma-separated networks of model_speed.py (default: {','.join(DEFAULT_MODELS)})")
    parser.add_argument("--repeats", type=int, default=3, help="timed passes per runtime (default 3)")
    parser.add_argument("--threads", type=int, default=usable_cores(),
                        help="threads of each runtime (default: the usable cores; on a machine other jobs load, "
                             "1: PyTorch's OpenMP threads wait on each other when a core is taken)")
    parser.add_argument("--quick", action="store_true", help="smoke run: reduced input sizes, one pass")
    add_json_option(parser)
    args = parser.parse_args(argv)
    args.models = [name.strip() for name in args.models.split(",") if name.strip()]
    unknown = [name for name in args.models if name not in NETWORKS or name == "r3d_18"]
    if unknown or not args.models:
        parser.error(f"--models: unknown network {', '.join(unknown) or '(none given)'}; known: "
                     f"{', '.join(DEFAULT_MODELS)}")
    if args.repeats < 1:
        parser.error("--repeats must be at least 1")
    if args.threads < 1:
        parser.error("--threads must be at least 1")
    if args.quick:
        args.repeats = 1
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        import onnxruntime  # noqa: PLC0415 - the export extra
    except ImportError:
        print("export_speed needs the export extra: pip install -e '.[export]'", file=sys.stderr)
        return 2
    torch.set_num_threads(args.threads)
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = args.threads
    report = Report("export_speed", describe_machine(threads=args.threads, onnxruntime=onnxruntime.__version__),
                    args.json)
    report.note(f"batch 1, fp32, {args.threads} thread(s) in both runtimes; PyTorch: eager, contiguous, "
                f"inference_mode; median of {args.repeats} passes after a warm-up, the runtimes alternating")
    title = "ONNX Runtime vs PyTorch on the CPU" + (" (--quick: reduced sizes)" if args.quick else "")
    table = report.table(title, ["network", "input per clip", "export s", "time axis", "PyTorch ms",
                                 "ONNX Runtime ms", "ONNX Runtime speed-up", "max difference"])
    with tempfile.TemporaryDirectory(prefix="export_speed.") as folder:
        for name in args.models:
            progress(f"exporting {name}")
            torch.manual_seed(0)
            model = build(name, args.quick)
            spec = model.input_spec
            started = time.perf_counter()
            program, axes = capture(onnx_ready(model), spec)
            path = Path(folder) / f"{name}.onnx"
            write_onnx(program, axes, path)
            export_seconds = time.perf_counter() - started
            session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
            progress(f"timing {name}")
            x = torch.randn(input_shape(spec, 1))
            torch_s, ort_s, difference = time_both(model, session, x, args.repeats)
            time_axis = ("-" if spec.dims == 2 else
                         f"{axes[2].min}+" if axes[2].dynamic else f"fixed {axes[2].size}")
            table.add(name, shape(x.shape[1:]), export_seconds, time_axis, 1000 * torch_s, 1000 * ort_s,
                      ratio(torch_s / ort_s), difference)
            path.unlink()
    report.finish()
    return 0


if __name__ == "__main__":
    sys.exit(main())
