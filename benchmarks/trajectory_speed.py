"""What trajectory stacking costs in the device-side finishing step, against optical-flow stacking.

Both paths start from a batch of uint8 flow levels, (N, L, 2, H, W) at the stored size
(256 x 340 by default), and end with (N, L, 2, crop, crop) float32 fields in pixels:

- optical-flow stacking: the finishing step today, minus what both share after it (mean
  subtraction, clipping, normalisation): the bare dequantization
  (``datamodules.inputs.dequantize_levels``) of the crops, which the loader's workers cut
  (untimed here);
- trajectory stacking: the whole fields dequantized, then ``datamodules.trajectory
  .trajectory_stack`` with each sample's trajectories started in its crop (random crop
  boxes, as in training), reading the full fields. The workers must ship the uncropped
  fields for it: H x W / crop^2 times the bytes (1.73x at 256 x 340 and 224), printed below
  the table.

The flow is smooth random motion of a few pixels, quantized with bound 20 (real flow is
smooth; the gathers' memory access depends on it). Each time is the median of ``--repeats``
timed batches after one untimed warm-up, the two paths alternating so that a change in the
machine's load hits both; on CUDA ``torch.cuda.synchronize`` brackets every batch. Prints a
markdown table row by row; ``--json FILE`` writes it unrounded with the machine
(``benchmarks/table.py``).

Run:  python benchmarks/trajectory_speed.py                      (CPU, and CUDA when torch sees it)
      python benchmarks/trajectory_speed.py --batch 4 --size 64x80 --crop 56 --json trajectory.json
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from table import Report, add_json_option, describe_machine, progress, ratio
from torch import Tensor

from datamodules.inputs import dequantize_levels, quantization
from datamodules.trajectory import trajectory_stack
from flow.torch_codec import quantize_tensor

BOUND = 20.0  # the project's default quantization bound (px)
MOTION_PX = 4.0  # typical displacement of the generated flow
COLUMNS = ["device", "batch", "fields", "stored", "crop", "optical flow samples/s", "trajectory samples/s",
           "trajectory ms/batch", "trajectory time / optical flow time"]


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=int, default=32, help="samples per batch (default 32)")
    parser.add_argument("--fields", type=int, default=10, help="flow fields per stack, L (default 10)")
    parser.add_argument("--size", default="256x340", help="stored field size HxW (default 256x340)")
    parser.add_argument("--crop", type=int, default=224, help="square crop side (default 224)")
    parser.add_argument("--repeats", type=int, default=5, help="timed batches per path (default 5)")
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto",
                        help="auto: the CPU, and CUDA too when torch sees it")
    add_json_option(parser)
    args = parser.parse_args(argv)
    try:
        args.height, args.width = (int(side) for side in args.size.lower().split("x"))
    except ValueError:
        parser.error(f"--size: expected HxW, e.g. 256x340, got {args.size}")
    if min(args.batch, args.fields, args.crop, args.repeats) < 1:
        parser.error("--batch, --fields, --crop and --repeats must be at least 1")
    if args.crop > min(args.height, args.width):
        parser.error(f"--crop {args.crop} does not fit the {args.size} fields")
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: torch sees no CUDA device")
    args.devices = {"auto": ["cpu"] + (["cuda"] if torch.cuda.is_available() else []),
                    "cpu": ["cpu"], "cuda": ["cuda"]}[args.device]
    return args


def smooth_levels(batch: int, fields: int, height: int, width: int, generator: torch.Generator) -> Tensor:
    """uint8 levels of smooth random flow, (N, L, 2, H, W)."""
    coarse = torch.randn(batch * fields, 2, max(2, height // 16), max(2, width // 16), generator=generator)
    flow = F.interpolate(coarse * MOTION_PX, size=(height, width), mode="bilinear", align_corners=True)
    return quantize_tensor(flow, BOUND).reshape(batch, fields, 2, height, width)


def timed(step: Callable[[], Tensor], device: str) -> float:
    if device == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    step()
    if device == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def measure(args: argparse.Namespace, device: str) -> tuple[float, float]:
    """Median seconds per batch of optical-flow stacking and of trajectory stacking on ``device``."""
    generator = torch.Generator().manual_seed(0)
    levels = smooth_levels(args.batch, args.fields, args.height, args.width, generator).to(device)
    quantized = quantization([BOUND] * args.batch).to(device)
    tops = torch.randint(0, args.height - args.crop + 1, (args.batch,), generator=generator)
    lefts = torch.randint(0, args.width - args.crop + 1, (args.batch,), generator=generator)
    boxes = torch.stack([tops, lefts], dim=1)
    crop = args.crop

    cropped = torch.stack([levels[n, ..., top:top + crop, left:left + crop]
                           for n, (top, left) in enumerate(boxes.tolist())])  # the workers' cut, untimed

    def optical_flow() -> Tensor:
        return dequantize_levels(cropped, quantized)

    def trajectory() -> Tensor:
        return trajectory_stack(dequantize_levels(levels, quantized), boxes.to(device), (crop, crop))

    paths = {"optical flow": optical_flow, "trajectory": trajectory}
    for step in paths.values():
        timed(step, device)  # warm-up: allocator, kernels
    times: dict[str, list[float]] = {name: [] for name in paths}
    for repeat in range(args.repeats):
        for name, step in paths.items():
            times[name].append(timed(step, device))
        progress(f"{device}: repeat {repeat + 1} of {args.repeats}")
    return statistics.median(times["optical flow"]), statistics.median(times["trajectory"])


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    cuda = torch.cuda.get_device_name() if "cuda" in args.devices else None
    report = Report("trajectory_speed", describe_machine(cuda, threads=torch.get_num_threads()), args.json)
    table = report.table("Trajectory stacking against optical-flow stacking (uint8 levels -> float32 fields "
                         "in pixels)", COLUMNS)
    try:
        for device in args.devices:
            progress(f"timing on {device}")
            plain, trajectory = measure(args, device)
            table.add(device, args.batch, args.fields, f"{args.height}x{args.width}", args.crop,
                      args.batch / plain, args.batch / trajectory, 1000 * trajectory, ratio(trajectory / plain))
    except KeyboardInterrupt:
        print("trajectory_speed: interrupted; the rows above were measured", file=sys.stderr)
        return 130
    report.note(f"trajectory stacking ships the uncropped {args.height}x{args.width} fields from the workers: "
                f"{args.height * args.width / args.crop ** 2:.2f}x the bytes of {args.crop}x{args.crop} crops")
    report.finish()
    return 0


if __name__ == "__main__":
    sys.exit(main())
