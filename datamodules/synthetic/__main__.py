"""``python -m datamodules.synthetic OUT --layout LAYOUT [...]``: a synthetic dataset in the layout of
a dataset that ``datamodules/annotations/`` reads (its source's ``synthetic``)."""

import argparse
import time

from datamodules.synthetic.generator import (
    DEFAULT_NUM_FRAMES,
    DEFAULT_VIDEOS_PER_CLASS,
    generate,
)
from datamodules.synthetic.discovery import layouts


def parse_size(text: str) -> tuple[int, int]:
    width, sep, height = text.lower().partition("x")
    if not sep or not width.isdigit() or not height.isdigit():
        raise argparse.ArgumentTypeError(f"--size must look like 320x240; got {text!r}")
    return int(width), int(height)


def main(args: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m datamodules.synthetic", description=__doc__)
    parser.add_argument("out", metavar="OUT", help="new or empty output folder; one holding a dataset with the "
                        "same settings is reused (or finished, after a killed run)")
    parser.add_argument("--layout", choices=list(layouts()), default="ucf101")
    parser.add_argument("--classes", type=int, default=8, help="number of classes, half motion, half appearance")
    parser.add_argument("--videos-per-class", type=int, default=DEFAULT_VIDEOS_PER_CLASS)
    parser.add_argument("--frames", type=int, default=DEFAULT_NUM_FRAMES, help="frames per video")
    parser.add_argument("--size", type=parse_size, default=None,
                        help="WxH; default the real dataset's (320x240, Kinetics 340x256)")
    parser.add_argument("--fps", type=float, default=25.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--overwrite", action="store_true",
                        help="delete the dataset in OUT (only one this tool wrote, with nothing else in it) "
                             "and generate anew")
    options = parser.parse_args(args)
    start = time.perf_counter()
    try:
        dataset = generate(options.out, options.layout, num_classes=options.classes,
                           videos_per_class=options.videos_per_class, num_frames=options.frames,
                           size=options.size, fps=options.fps, seed=options.seed, overwrite=options.overwrite)
    except ValueError as error:
        parser.error(str(error))
    except FileExistsError as error:
        # OUT itself is the problem, not the options' syntax: one line, without the usage.
        parser.exit(2, f"{parser.prog}: error: {error}\n")
    motion = sum(kind == "motion" for kind in dataset.kinds.values())
    print(f"{dataset.layout}: {len(dataset.classes)} classes ({motion} motion, "
          f"{len(dataset.classes) - motion} appearance), {len(dataset.videos)} videos in {dataset.root} "
          f"({time.perf_counter() - start:.1f} s)")


if __name__ == "__main__":
    main()
