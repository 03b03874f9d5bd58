"""``python cli.py classify``: a trained model's classes for a user's own videos.

    python cli.py classify --checkpoint runs/quickstart/checkpoints/last.ckpt clip.mp4
    python cli.py classify --checkpoint last.ckpt videos/ "more/*.mp4" list.txt --output scores.jsonl
    python cli.py classify --config configs/i3d_rgb_kinetics400.yaml long.mp4 --window 4 --stride 2 \\
        --render labelled.mp4

The checkpoint carries what the model needs (``inference/load.py``): class names, the test
protocol, and for flow models the flow's settings, with which the flow is computed in
memory as extraction computed it (``inference/scoring.py``). Each video's top-k classes
are printed per stream and fused; ``--output`` writes every probability as JSON lines
(``inference/classify_output.py``); ``--window`` scores sliding windows; ``--render``
draws the labels on the video (``inference/render.py``).

Exit status: 0 when every video was classified; 1 when some could not be (each named with
the decoder's reason, the others classified); 2 for a usage or model problem (a missing or
corrupt checkpoint, ``--device cuda`` without a GPU, a flow the model cannot get here);
3 when the output cannot be written; 130 / 143 when Ctrl-C / SIGTERM stopped the run
(``flow.video_run``'s statuses). Outputs appear under their names only complete.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any

import torch

from datamodules.decoding import VideoDecodeError
from flow.ownership import completed_file
from flow.video_run import EXIT_FAILURES, EXIT_STOPPED, FatalError, failure_reason, stoppable
from inference.classify_output import (caption_lines, describe_protocol, plain_scores, top_table,
                                       window_line)
from inference.render import Caption, render_captions
from inference.video_inputs import find_videos
from inference.views import parse_views, views_protocol

EXIT_USAGE = 2  # argparse's status for a bad command line; here also a model that cannot run


class UsageError(Exception):
    """The command cannot run as given (one line, exit 2)."""


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="cli.py classify",
        description="The top classes of your own videos by a trained model (a checkpoint of `cli.py fit`, or a "
                    "config with published weights), per stream and fused; flow computed on the fly.",
        epilog="Exit status: 0 all classified, 1 some videos failed (named), 2 usage or model problem, "
               "3 output not writable, 130/143 stopped by Ctrl-C/SIGTERM.")
    parser.add_argument("videos", nargs="+", metavar="VIDEO",
                        help="video files, folders (every video under them), globs (quoted) or list files "
                             "(.txt: one video per line)")
    model = parser.add_argument_group("model")
    model.add_argument("--checkpoint", type=Path, metavar="CKPT", help="a checkpoint written by `cli.py fit`")
    model.add_argument("--config", type=Path, metavar="X.yaml",
                       help="a training config (its model and data blocks): published weights as its networks' "
                            "`weights` say, or the --checkpoint's weights")
    parser.add_argument("--output", type=Path, metavar="FILE.jsonl",
                        help="write one JSON object per video: every class's probability per stream and fused")
    parser.add_argument("--top", type=int, default=5, metavar="K", help="classes printed per stream (default 5)")
    parser.add_argument("--views", default="protocol",
                        help="protocol (the checkpoint's test protocol, default), centre, N (positions or clips, "
                             "centre crop) or NxC (C crops: 1, 3, 5, 10)")
    parser.add_argument("--device", default="auto",
                        help="cpu, cuda or cuda:N; auto (default): cuda when torch sees a GPU, else cpu")
    parser.add_argument("--window", type=float, metavar="S", help="classify windows of S seconds")
    parser.add_argument("--stride", type=float, metavar="S",
                        help="seconds between the starts of consecutive windows (default: --window)")
    parser.add_argument("--render", type=Path, metavar="OUT.mp4",
                        help="write the (single) video with its top labels drawn on every frame")
    args = parser.parse_args(argv)
    if args.checkpoint is None and args.config is None:
        parser.error("give --checkpoint CKPT, or --config X.yaml (with or without --checkpoint)")
    if args.top < 1:
        parser.error(f"--top must be at least 1, got {args.top}")
    try:
        args.view_choice = parse_views(args.views)
    except ValueError as error:
        parser.error(str(error))
    if args.stride is not None and args.window is None:
        parser.error("--stride needs --window")
    if args.window is not None:
        args.stride = args.window if args.stride is None else args.stride
        if not (args.window > 0 and args.stride > 0):
            parser.error(f"--window and --stride must be positive seconds, got {args.window} and {args.stride}")
    return args


def choose_device(text: str) -> torch.device:
    """``--device``: auto is cuda where torch sees a GPU; cuda where it sees none is a UsageError."""
    if text == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(text)
    except RuntimeError:
        raise UsageError(f"--device {text}: not a device (cpu, cuda, cuda:N, auto)") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UsageError(f"--device {text}: torch sees no CUDA device here; use --device cpu")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise UsageError(f"--device {text}: torch sees {torch.cuda.device_count()} CUDA device(s)")
    return device


def load_model(args: argparse.Namespace, device: torch.device) -> Any:
    """The ``Loaded`` model of ``--checkpoint`` / ``--config``; UsageError naming the file and the reason."""
    from inference.load import NoClassNamesWarning, load_checkpoint, load_config

    named = args.config or args.checkpoint
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", NoClassNamesWarning)
        try:
            if args.config is not None:
                loaded = load_config(args.config, args.checkpoint, device=device)
            else:
                loaded = load_checkpoint(args.checkpoint, device=device)
        except (Exception, SystemExit) as error:  # noqa: BLE001 - any refusal is one line, not a traceback
            message = _message(error)
            raise UsageError(message if str(named) in message else f"{named}: {message}") from None
    for warning in caught:  # one line each, not Python's file:line and source text
        print(f"warning: {warning.message}", file=sys.stderr)
    return loaded


def _message(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return text[0] if text else type(error).__name__


def main(argv: Sequence[str] | None = None) -> int:
    """``python cli.py classify ARGS``: the exit status (see the module's docstring)."""
    args = parse_args(sys.argv[1:] if argv is None else argv)
    return stoppable(lambda: _classify(args))


def _classify(args: argparse.Namespace) -> int:
    started = time.perf_counter()
    inputs = find_videos(args.videos)
    try:
        if args.render is not None and len(inputs.videos) > 1:
            raise UsageError(f"--render draws on one video; {len(inputs.videos)} were given")
        device = choose_device(args.device)
        loaded = load_model(args, device)
        scorer = _scorer(loaded, device, args)
    except UsageError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_USAGE
    failed = [_report_failure(argument, reason) for argument, reason in inputs.problems]
    try:
        if args.output is None:
            classified, failed_videos = classify_videos(inputs.videos, scorer, loaded, args, None)
        else:
            with completed_file(args.output) as partial, partial.open("w", encoding="utf-8") as out:
                for argument, reason in inputs.problems:
                    _write(out, {"video": argument, "error": reason})
                classified, failed_videos = classify_videos(inputs.videos, scorer, loaded, args, out)
    except (FatalError, OSError) as error:
        print(f"error: {error}; stopped", file=sys.stderr)
        return EXIT_STOPPED
    failed += failed_videos
    print(f"classified {classified} of {len(inputs.videos)} videos in {time.perf_counter() - started:.1f} s"
          + (f"; failed: {len(failed)}" if failed else "")
          + (f"; wrote {args.output}" if args.output else ""), file=sys.stderr)
    return EXIT_FAILURES if failed else 0


def _scorer(loaded: Any, device: torch.device, args: argparse.Namespace) -> Any:
    from inference.scoring import VideoScorer

    names = getattr(loaded.module, "dataset_names", None)
    if names:  # lightning_modules.multi_task: its test batches carry each video's dataset, a user's do not
        raise UsageError(f"{args.checkpoint or args.config}: a multi-task checkpoint (one head per dataset: "
                         f"{', '.join(names)}) cannot say which head a video belongs to: classify scores "
                         "single-task models only")
    try:
        return VideoScorer(loaded, device, views_protocol(args.view_choice, loaded.recipe.test))
    except (Exception, SystemExit) as error:  # noqa: BLE001 - a model that cannot run here: one line
        raise UsageError(f"cannot score with {args.checkpoint or args.config}: {_message(error)}") from None


def classify_videos(videos: Sequence[Path], scorer: Any, loaded: Any, args: argparse.Namespace,
                    out: IO[str] | None) -> tuple[int, list[str]]:
    """Score, print and write each video in turn; the number classified, and what failed (each named on
    stderr with the reason, and in ``out``): videos, and the ``--render`` file."""
    classified, failed = 0, []
    for video in videos:
        try:
            if args.window is None:
                result, windows = scorer.score(video), None
            else:
                windows = scorer.score_windows(video, args.window, args.stride)
                if not windows:
                    raise ValueError("no window to classify (an empty video?)")
                result = windows[0][2]
        except Exception as error:  # noqa: BLE001 - a bad video fails alone; failure_reason names it
            reason = error.reason if isinstance(error, VideoDecodeError) else failure_reason(error, video)
            failed.append(_report_failure(str(video), reason))
            if out is not None:
                _write(out, {"video": str(video), "error": reason})
            continue
        classified += 1
        classes = class_names(loaded, result.scores)
        record: dict[str, Any] = {"video": str(video), "checkpoint": str(args.checkpoint or args.config),
                                  "classes": classes, "views": args.views}
        shown = min(args.top, 3)  # lines drawn on a frame
        if windows is None:
            _print_video(video, result, classes, args.top)
            record.update(protocol=result.protocol, flow_engine=result.flow_engine, notes=list(result.notes),
                          scores=plain_scores(result.scores))
            captions = [Caption(0.0, float("inf"), caption_lines(result.scores, classes, shown))]
        else:
            _print_windows(video, windows, classes, args)
            record["flow_engine"] = result.flow_engine
            record["windows"] = [{"start": start, "end": end, "scores": plain_scores(scores.scores),
                                  "protocol": scores.protocol, "notes": list(scores.notes)}
                                 for start, end, scores in windows]
            captions = [Caption(start, end, caption_lines(scores.scores, classes, shown))
                        for start, end, scores in windows]
        if out is not None:
            _write(out, record)
        if args.render is not None:
            try:
                frames = render_captions(video, args.render, captions)
            except Exception as error:  # noqa: BLE001 - the scores stand; the drawing failed
                failed.append(_report_failure(str(args.render), f"cannot render: {failure_reason(error, video)}"))
            else:
                print(f"rendered {frames} frames to {args.render}", file=sys.stderr)
    return classified, failed


def class_names(loaded: Any, scores: dict[str, Any]) -> list[str]:
    """The model's class names, or the class indices (``"0"``, ``"1"``...) where it has none."""
    return list(loaded.classes) if loaded.classes else [str(i) for i in range(len(next(iter(scores.values()))))]


def _print_video(video: Path, result: Any, classes: Sequence[str], top: int) -> None:
    lines = [f"{video}  ({describe_protocol(result.protocol, result.flow_engine)})"]
    lines += [f"  note: {note}" for note in result.notes]
    lines += top_table(result.scores, classes, top)
    print("\n".join(lines), flush=True)


def _print_windows(video: Path, windows: Sequence[Any], classes: Sequence[str], args: argparse.Namespace) -> None:
    lines = [f"{video}  ({len(windows)} windows of {args.window:g} s every {args.stride:g} s"
             + f"; {describe_protocol(windows[0][2].protocol, windows[0][2].flow_engine)})"]
    # Notes of every window (the flow engine) once; a window's own (a short last window) under it.
    common = [note for note in windows[0][2].notes if all(note in scores.notes for *_, scores in windows)]
    lines += [f"  note: {note}" for note in common]
    for start, end, scores in windows:
        lines.append(window_line(start, end, scores.scores, classes, args.top))
        lines += [f"               note: {note}" for note in scores.notes if note not in common]
    print("\n".join(lines), flush=True)


def _report_failure(video: str, reason: str) -> str:
    print(f"failed: {video}: {reason}", file=sys.stderr, flush=True)
    return video


def _write(out: IO[str], record: dict[str, Any]) -> None:
    out.write(json.dumps(record) + "\n")
    out.flush()
