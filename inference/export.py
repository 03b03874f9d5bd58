"""``python cli.py export``: a trained model's networks as deployable files, each with its input spec.

    python cli.py export --checkpoint runs/i3d/checkpoints/last.ckpt --format onnx i3d.onnx
    python cli.py export --checkpoint two_stream.ckpt --format torchscript two_stream.pt
    python cli.py export --config configs/i3d_rgb_kinetics400.yaml --format exported i3d.pt2

One file per stream: a one-stream model writes OUT; a two-stream model writes
``<OUT stem>.<stream><suffix>`` for each stream (``two_stream.spatial.onnx``,
``two_stream.temporal.onnx``), whose softmax scores are fused as the spec's notes say.
Beside each file its spec, ``<file>.json`` (``inference/export_spec.py``): input shape
with dynamic axes named (batch; time for 3D networks where the network and format allow),
mean/std, modality, class names, the training flow's settings for flow streams.

Every file is read back and run against the eager network on random inputs of the
declared shapes (``inference/exporters.py``); it is kept only when they agree within
1e-4 (ONNX needs onnxruntime for that: ``pip install 'twostream[export]'``).

Exit status: 0 every stream exported and checked; 1 a stream could not be exported (named,
with the exporter's reason; the others are written); 2 a usage or model problem (a missing
or corrupt checkpoint); 3 an output not writable; 130 / 143 Ctrl-C / SIGTERM (nothing
half-written is left under an output's name).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from flow.meta import write_json_atomic
from flow.ownership import completed_file
from flow.video_run import stoppable
from inference.export_spec import export_spec, spec_path
from inference.exporters import (FORMATS, SUFFIXES, Axis, Checked, ExportError, Format, capture, check,
                                 onnx_ready, write_exported, write_onnx, write_torchscript)
from models.input_spec import InputSpec

EXIT_FAILED, EXIT_USAGE, EXIT_UNWRITABLE = 1, 2, 3


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="cli.py export", description=__doc__.split("\n\n")[0],
        epilog="Exit status: 0 exported and checked, 1 a stream failed (named), 2 usage or model problem, "
               "3 output not writable, 130/143 stopped by Ctrl-C/SIGTERM.")
    parser.add_argument("output", type=Path, metavar="OUT",
                        help="the file to write (two streams: <stem>.<stream><suffix> each)")
    parser.add_argument("--checkpoint", type=Path, help="a checkpoint written by `cli.py fit`")
    parser.add_argument("--config", type=Path,
                        help="a training config (its model block): published weights as its networks' weights, "
                             "or with --checkpoint an older checkpoint without recipe")
    parser.add_argument("--format", choices=FORMATS, default="onnx",
                        help="onnx (ONNX Runtime, TensorRT), torchscript (a trace; torch.jit), exported "
                             "(torch.export's .pt2). Default: onnx")
    parser.add_argument("--stream", action="append", metavar="NAME",
                        help="export only this stream (rgb, flow, spatial, temporal); repeatable")
    args = parser.parse_args(argv)
    if args.checkpoint is None and args.config is None:
        parser.error("give --checkpoint CKPT or --config X.yaml")
    return args


def stream_files(output: Path, streams: Sequence[str], fmt: Format) -> dict[str, Path]:
    """Each stream's file: ``output`` itself for one stream, ``<stem>.<stream><suffix>`` for several."""
    if len(streams) == 1:
        return {streams[0]: output}
    suffix = output.suffix or SUFFIXES[fmt]
    return {name: output.with_name(f"{output.stem}.{name}{suffix}") for name in streams}


def fusion_notes(loaded: Any, streams: Sequence[str]) -> list[str]:
    """How a module's streams combine: its own softmax weights (two-stream models)."""
    weights = getattr(loaded.module, "fusion_weights", None)
    if weights is None or len(streams) < 2:
        return []
    pairs = ", ".join(f"{name} {weight:g}" for name, weight in zip(streams, weights))
    return [f"two streams, one file each ({', '.join(streams)}): the model's fused score is the weighted average of "
            f"each stream's softmax ({pairs}; normalised to sum to 1), over the same views of a video"]


def export_network(network: nn.Module, spec: InputSpec, fmt: Format, path: Path) -> tuple[tuple[Axis, ...], Checked]:
    """``network`` written to ``path`` in ``fmt`` (complete or not at all), and checked.

    A format that cannot keep a 3D network's time axis symbolic (an operation without a
    translation for a symbolic length, a trace that does not follow it) gets it static,
    with the reason, and refuses other lengths.

    Raises:
        ExportError: the network cannot be exported, or the file disagrees with eager PyTorch.
    """
    source = onnx_ready(network) if fmt == "onnx" else network
    program, axes = capture(source, spec)

    def attempt(program: Any, axes: tuple[Axis, ...]) -> Checked:
        with completed_file(path) as partial:
            if fmt == "onnx":
                write_onnx(program, axes, partial)
            elif fmt == "torchscript":
                write_torchscript(network, spec, axes, partial)
            else:
                write_exported(program, partial)
            return check(network, spec, fmt, partial, axes)

    try:
        return axes, attempt(program, axes)
    except ExportError as error:
        if spec.dims != 3 or not axes[2].dynamic:
            raise
        # One more try with the clip length fixed: the format's own limit, said in the spec.
        reason = f"the {fmt} file fixes the clip length to {spec.frames} frames ({error})"
        program, axes = capture(source, spec, static_reason=reason)
        return axes, attempt(program, axes)


def output_shape(network: nn.Module, spec: InputSpec) -> list[str | int]:
    with torch.no_grad():
        out = network(torch.zeros((1, spec.channels) + ((spec.frames,) if spec.dims == 3 else ()) + (spec.size,) * 2))
    return ["batch", *out.shape[1:]]


def has_classifier(network: nn.Module) -> bool:
    get = getattr(network, "get_classifier", None)
    return get is None or not isinstance(get(), nn.Identity)


def describe(path: Path, axes: tuple[Axis, ...], checked: Checked) -> str:
    shape = ", ".join(axis.name if axis.dynamic else str(axis.size) for axis in axes)
    ranges = "; ".join(f"{axis.name} {axis.min}.." + (str(axis.max) if axis.max else "")
                       for axis in axes if axis.dynamic)
    fixed = [f"{axis.name} fixed: {axis.reason}" for axis in axes if axis.reason]
    verdict = (f"same as PyTorch within 1e-4 (largest difference {checked.max_diff:.2g})"
               if checked.max_diff is not None else f"not checked: {checked.skipped}")
    return "; ".join([f"wrote {path}: input [{shape}] ({ranges})", verdict, *fixed])


def load_model(args: argparse.Namespace) -> Any:
    from inference.load import load_checkpoint, load_config  # noqa: PLC0415 - Lightning, only when run

    if args.config is not None:
        return load_config(args.config, args.checkpoint, device="cpu")
    return load_checkpoint(args.checkpoint, device="cpu")


def run(args: argparse.Namespace) -> int:
    from lightning_modules.checkpoints import CheckpointFileError  # noqa: PLC0415

    try:
        loaded = load_model(args)
    except (CheckpointFileError, ValueError) as error:
        print(f"export: {error}", file=sys.stderr)
        return EXIT_USAGE
    streams = loaded.streams()
    chosen = args.stream or list(streams)
    unknown = [name for name in chosen if name not in streams]
    if unknown:
        print(f"export: --stream {', '.join(unknown)}: the model's streams are {', '.join(streams)}", file=sys.stderr)
        return EXIT_USAGE
    files = stream_files(args.output, chosen, args.format)
    notes = fusion_notes(loaded, list(streams))
    source = str(args.checkpoint or args.config)
    status = 0
    for name, path in files.items():
        network, key = streams[name]
        spec = network.input_spec
        try:
            axes, checked = export_network(network, spec, args.format, path)
        except ExportError as error:
            print(f"export: stream {name} ({type(network).__name__}) not exported as {args.format}: {error}",
                  file=sys.stderr)
            status = EXIT_FAILED
            continue
        except OSError as error:
            print(f"export: cannot write {path}: {error.strerror or error}", file=sys.stderr)
            return EXIT_UNWRITABLE
        document = export_spec(fmt=args.format, path=path, network=network, stream=name, batch_key=key, spec=spec,
                               axes=axes, output_shape=output_shape(network, spec), logits=has_classifier(network),
                               checked=checked, classes=loaded.classes, recipe=loaded.recipe, source=source,
                               notes=notes)
        try:
            write_json_atomic(spec_path(path), document, indent=2)
        except OSError as error:
            print(f"export: cannot write {spec_path(path)}: {error.strerror or error}", file=sys.stderr)
            return EXIT_UNWRITABLE
        print(describe(path, axes, checked), file=sys.stderr)
    return status


def main(argv: Sequence[str] | None = None) -> int:
    """``python cli.py export ARGS``: the exit status (module docstring)."""
    args = parse_args(sys.argv[1:] if argv is None else argv)
    return stoppable(lambda: run(args))
