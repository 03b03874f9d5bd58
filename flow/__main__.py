"""``python -m flow extract ...``, ``python -m flow visualize ...``, ``python -m flow pack|unpack ...``.

Exit status of ``extract``: 0 all videos done or skipped, 1 some videos failed (listed
in the failures file), 2 bad arguments, 3 the run stopped (output unwritable, disk full).
``pack`` and ``unpack``: 0 all done or skipped, 1 some failed (printed), 2 bad arguments.
All three: 130 / 143 when Ctrl-C / SIGTERM stopped the run (one line; rerun to resume).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from flow.algorithms import ALGORITHMS, create_algorithm
from flow.codec import DEFAULT_BOUND, DEFAULT_JPEG_QUALITY, dequantize
from flow.colorwheel import flow_to_color
from flow.extract import extract_many
from flow.extraction_config import STORES, ExtractionConfig
from flow.frames import DECODERS
from flow.layout import NAMED_LAYOUTS
from flow.pack_convert import convert_many
from flow.sharding import Shard, parse_shard, process_device, shard_from_env
from flow.store import FolderFlowStore
from flow.torch_codec import JPEG_ENCODERS
from flow.video_run import EXIT_FAILURES, run_command, stoppable
from flow.videos import VIDEO_EXTENSIONS

EXIT_USAGE = 2


def _number(kind: type, minimum: float, maximum: float | None = None) -> Callable[[str], float]:
    """An argparse type: ``kind`` within [minimum, maximum]."""

    def parse(text: str) -> float:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {kind.__name__}, got {text!r}") from None
        if value < minimum or (maximum is not None and value > maximum):
            upper = f" and <= {maximum}" if maximum is not None else ""
            raise argparse.ArgumentTypeError(f"must be >= {minimum}{upper}, got {text}")
        return value

    return parse


def _param(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected key=value, got {text!r}")
    return key.strip(), value.strip()


def _shard(text: str) -> Shard:
    try:
        return parse_shard(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _add_extract(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "extract",
        help="extract optical flow from videos into folders of JPEGs",
        description="Extract flow from every video under VIDEO_ROOT (or those in --list) into "
        "OUT_ROOT/<video id>/. Complete videos (meta.json present) are skipped, so a killed "
        "run is resumed by running the same command again.",
    )
    parser.add_argument("video_root", type=Path, metavar="VIDEO_ROOT")
    parser.add_argument("out_root", type=Path, metavar="OUT_ROOT")
    parser.add_argument("--list", type=Path, dest="list_file", metavar="FILE",
                        help="video paths relative to VIDEO_ROOT, one per line (annotation files work: "
                        "extra columns are ignored)")
    parser.add_argument("--algorithm", default="tvl1", choices=sorted(ALGORITHMS))
    parser.add_argument("--param", type=_param, action="append", default=[], metavar="KEY=VALUE",
                        help="algorithm parameter, repeatable (e.g. --param preset=fast)")
    parser.add_argument("--short-side", type=_number(int, 0), default=256,
                        help="resize so the shorter side has this many pixels; 0 keeps the size")
    parser.add_argument("--step", type=_number(int, 1), default=1, help="use every step-th frame")
    parser.add_argument("--bound", type=_number(float, 1e-6), default=DEFAULT_BOUND,
                        help="flow clipped to +-bound pixels before quantization")
    parser.add_argument("--quality", type=_number(int, 0, 100), default=DEFAULT_JPEG_QUALITY,
                        help="JPEG quality")
    parser.add_argument("--backward", action="store_true", help="also write backward flow (flow_bx/flow_by)")
    parser.add_argument("--rgb", action="store_true", help="also write the sampled RGB frames (img_)")
    parser.add_argument("--workers", type=_number(int, 1), default=1,
                        help="worker processes; >1 also isolates decoder crashes")
    parser.add_argument("--threads", type=_number(int, 0), default=0,
                        help="flow threads per worker, each on its own frame pairs; 0 (default): "
                        "the usable cores divided by the workers. With --batch: decoding threads, and as "
                        "many JPEG-writing threads (0: half the usable cores)")
    parser.add_argument("--batch", type=_number(int, 0), default=0, metavar="N",
                        help="compute N frame pairs of several videos in one call (algorithms with a batched "
                        "form: raft, tvl1_torch; the way to use a GPU); 0 (default): one video at a time")
    parser.add_argument("--device", metavar="DEVICE",
                        help="torch device of the algorithms that take one (raft, tvl1_torch): cpu, cuda, "
                        "cuda:1; the same as --param device=DEVICE. Under torchrun, cuda is each "
                        "process's own GPU, cuda:LOCAL_RANK")
    parser.add_argument("--jpeg", default="opencv", choices=JPEG_ENCODERS,
                        help="JPEG encoder of the batched path: opencv (default; CPU threads, the per-video "
                        "path's bytes) or torchvision (on the device: nvjpeg on CUDA)")
    parser.add_argument("--decoder", default="pyav", choices=sorted(DECODERS),
                        help="video decoder (pyav: gray frames straight from the luma plane, faster)")
    parser.add_argument("--shard", type=_shard, metavar="I/N",
                        help="take every N-th video starting at I (0-based); default from "
                        "SLURM_ARRAY_TASK_ID/COUNT or torchrun's RANK/WORLD_SIZE, else 0/1")
    parser.add_argument("--extensions", default=",".join(VIDEO_EXTENSIONS),
                        help="comma-separated video file extensions to look for")
    parser.add_argument("--failures", type=Path, metavar="FILE",
                        help="where to list failed videos (default OUT_ROOT/failures_shard<I>of<N>.txt)")
    parser.add_argument("--store", default="folders", choices=STORES,
                        help="folders: one folder of JPEGs per video (default); packed: one zip per video, "
                        "OUT_ROOT/<video id>.zip (see python -m flow pack)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.set_defaults(run=_run_extract)


def _run_extract(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    try:
        shard = args.shard or shard_from_env()
    except ValueError as error:
        parser.error(f"cannot take the shard from the environment ({error}); pass --shard I/N")
    params = dict(args.param)
    if args.device is not None:
        if "device" not in ALGORITHMS[args.algorithm].defaults:
            parser.error(f"argument --device: {args.algorithm} runs on no torch device")
        if params.setdefault("device", args.device) != args.device:
            parser.error(f"argument --device: {args.device} differs from --param device={params['device']}")
    if "device" in params:
        try:
            params["device"] = process_device(params["device"])
        except ValueError as error:
            parser.error(f"cannot take this process's GPU from the environment ({error}); pass --device cuda:N")
    if args.batch and args.workers > 1:
        parser.error("argument --workers: --batch runs in one process (one per GPU; split the videos "
                     "with --shard or torchrun/SLURM)")
    try:
        config = ExtractionConfig(
            algorithm=args.algorithm, params=params, short_side=args.short_side, step=args.step,
            bound=args.bound, quality=args.quality, backward=args.backward, rgb=args.rgb,
            decoder=args.decoder, threads=args.threads, batch=args.batch, jpeg=args.jpeg, store=args.store,
        )  # fmt: skip
    except ValueError as error:
        parser.error(str(error))
    try:
        # Built once here so a bad parameter is one usage error, not a failure per worker.
        create_algorithm(config.algorithm, **config.params)
    except (TypeError, ValueError) as error:
        parser.error(f"argument --param: {error}")
    return run_command(parser, args, shard, args.algorithm, lambda videos, failures: extract_many(
        args.video_root, videos, args.out_root, config, workers=args.workers, failures_file=failures,
        progress=not args.no_progress))


def _add_visualize(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "visualize",
        help="render a video's stored flow as colour-coded pictures",
        description="Render the flow in VIDEO_FOLDER (Middlebury colours, one scale for all fields) "
        "as a PNG grid of fields or an animated GIF.",
    )
    parser.add_argument("folder", type=Path, metavar="VIDEO_FOLDER")
    parser.add_argument("output", type=Path, metavar="OUT.png|OUT.gif")
    parser.add_argument("--max-fields", type=_number(int, 1), default=16,
                        help="at most this many fields, equally spaced over the video")
    parser.add_argument("--index", type=_number(int, 0), help="PNG of this one field (0-based)")
    parser.add_argument("--backward", action="store_true", help="the backward flow")
    parser.add_argument("--columns", type=_number(int, 1), default=4, help="fields per row of the PNG grid")
    parser.set_defaults(run=_run_visualize)


def _grid(images: Sequence[np.ndarray], columns: int) -> np.ndarray:
    height, width = images[0].shape[:2]
    columns = min(columns, len(images))
    rows = -(-len(images) // columns)
    canvas = np.zeros((rows * height, columns * width, 3), np.uint8)
    for n, image in enumerate(images):
        row, column = divmod(n, columns)
        canvas[row * height : (row + 1) * height, column * width : (column + 1) * width] = image
    return canvas


def _run_visualize(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    suffix = args.output.suffix.lower()
    if suffix not in (".png", ".gif"):
        parser.error(f"output {args.output} must end in .png or .gif")
    if not args.folder.is_dir():
        parser.error(f"{args.folder} is not a folder")
    store, video = FolderFlowStore(args.folder.parent), args.folder.name
    try:
        count = store.num_flows(video)
        if count == 0:
            raise ValueError(f"{args.folder} holds no flow fields (no meta.json, no {store.layout.flow_x} files)")
        if args.index is not None:
            if args.index >= count:
                raise ValueError(f"--index {args.index} out of range: {args.folder} holds {count} fields")
            indices = [args.index]
        else:
            indices = sorted({round(i) for i in np.linspace(0, count - 1, min(count, args.max_fields))})
        fields = dequantize(store.read_flow(video, indices, args.backward), store.bound(video))
    except (OSError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_FAILURES
    fields = fields.transpose(0, 2, 3, 1)  # T x H x W x 2
    # One scale for all fields, so colours compare across the strip and the GIF does not flicker.
    scale = max(float(np.linalg.norm(fields, axis=-1).max()), 1e-6)
    images = [flow_to_color(f, max_magnitude=scale) for f in fields]
    args.output.parent.mkdir(parents=True, exist_ok=True)
    if suffix == ".png":
        Image.fromarray(_grid(images, args.columns)).save(args.output)
    else:
        frames = [Image.fromarray(image) for image in images]
        frames[0].save(args.output, save_all=True, append_images=frames[1:], duration=100, loop=0)
    print(f"{args.output}: {len(images)} fields of {args.folder} (max magnitude {scale:.2f} px)")
    return 0


def _add_convert(commands: argparse._SubParsersAction, direction: str) -> None:
    packing = direction == "pack"
    source, target = ("FOLDERS", "PACKED") if packing else ("PACKED", "FOLDERS")
    parser = commands.add_parser(
        direction,
        help="convert flow folders into packs (one zip per video)" if packing
        else "convert packs (one zip per video) back into flow folders",
        description=f"Convert every video under {source} into {target}/<video id>"
        f"{'.zip' if packing else '/'}, files byte-identical. Complete outputs are skipped, so a "
        "killed run is resumed by running the same command again.",
    )
    parser.add_argument("source", type=Path, metavar=source)
    parser.add_argument("target", type=Path, metavar=target)
    parser.add_argument("--workers", type=_number(int, 1), default=1, help="worker processes")
    if packing:
        parser.add_argument("--flow-layout", default="ours", choices=sorted(NAMED_LAYOUTS),
                            help="file names of folders without meta.json (denseflow's, mmaction2's)")
    parser.set_defaults(run=_run_convert, direction=direction)


def _run_convert(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    if not args.source.is_dir():
        parser.error(f"{args.source} is not a folder")
    layout = NAMED_LAYOUTS[args.flow_layout] if args.direction == "pack" else None

    def convert() -> int:
        summary = convert_many(args.direction, args.source, args.target, workers=args.workers, layout=layout,
                               report=lambda line: print(line, file=sys.stderr))
        print(summary.format())
        return EXIT_FAILURES if summary.failed else 0

    return stoppable(convert)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m flow", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    _add_extract(commands)
    _add_visualize(commands)
    _add_convert(commands, "pack")
    _add_convert(commands, "unpack")
    args = parser.parse_args(argv)
    return args.run(args, commands.choices[args.command])


if __name__ == "__main__":
    sys.exit(main())
