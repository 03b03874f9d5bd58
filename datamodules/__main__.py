"""``python -m datamodules check --dataset NAME --annotations PATH --video-root DIR [...]``,
or ``python -m datamodules check --config configs/X.yaml [--data.init_args.KEY VALUE ...]``
for the data a training config reads (with the same overrides ``cli.py`` would take);
``python -m datamodules resize VIDEO_ROOT OUT [...]`` re-encodes videos smaller
(``datamodules/resize_command.py``)."""

from __future__ import annotations

import argparse
import sys

from datamodules import check as check_module
from datamodules.annotations import DATASETS
from datamodules.check import check, check_datamodule, datamodule_from_config
from datamodules.resize_command import add_resize_command, run_resize
from flow.layout import NAMED_LAYOUTS


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m datamodules")
    commands = parser.add_subparsers(dest="command", required=True)
    command = commands.add_parser("check", help="check a downloaded dataset against its annotations",
                                  description=check_module.__doc__,
                                  formatter_class=argparse.RawDescriptionHelpFormatter)
    command.add_argument("--config", help="a training config (configs/X.yaml): check its data section instead; "
                                          "--data.* overrides as for cli.py may follow")
    command.add_argument("--dataset", choices=list(DATASETS))
    command.add_argument("--annotations",
                         help="UCF-101: ucfTrainTestlist/; HMDB-51: the split files' folder; "
                              "Kinetics: a CSV or a folder of train/val/test CSVs; list: an mmaction2 list file; "
                              "SSv2: the folder of labels.json, train.json, validation.json, test.json")
    command.add_argument("--video-root", help="the folder the listed videos are relative to")
    command.add_argument("--frames-root", help="one folder of flow/RGB frames per video; checks flow when given")
    command.add_argument("--split", type=int, default=1, help="UCF-101 / HMDB-51 split (1-3)")
    command.add_argument("--label-map", help="class names, one per line, in label order (Kinetics, list)")
    command.add_argument("--list-kind", choices=("video", "rawframes"), default="video")
    command.add_argument("--flow-layout", choices=list(NAMED_LAYOUTS), default="ours",
                         help="file names in flow folders without meta.json")
    command.add_argument("--cache-dir", help="where the index is cached (default <frames or video root>/.index_cache)")
    command.add_argument("--verify", action="store_true",
                         help="open every flow file (every pack's index and members) and check it against meta.json")
    resize = add_resize_command(commands)
    args, overrides = parser.parse_known_args(argv)
    if args.command == "resize":
        if overrides:
            resize.error(f"unrecognized arguments: {' '.join(overrides)}")
        return run_resize(args, resize)
    if overrides and not (args.config and all(not o.startswith("-") or o.startswith("--data.") for o in overrides)):
        command.error(f"unrecognized arguments: {' '.join(overrides)} (--data.* overrides go with --config)")
    if args.config:
        try:
            datamodule = datamodule_from_config(args.config, overrides)
        except (OSError, KeyError, ValueError, TypeError) as error:
            command.error(f"--config {args.config}: {error}")
        return check_datamodule(datamodule, verify=args.verify)
    missing = [flag for flag, value in (("--dataset", args.dataset), ("--annotations", args.annotations),
                                        ("--video-root", args.video_root)) if value is None]
    if missing:
        command.error(f"give --config, or {', '.join(missing)}")
    if args.verify and args.frames_root is None:
        command.error("--verify opens flow files: give --frames-root")
    return check(args.dataset, args.annotations, args.video_root, args.frames_root, args.split,
                 label_map=args.label_map, list_kind=args.list_kind, flow_layout=args.flow_layout,
                 cache_dir=args.cache_dir, verify=args.verify)


if __name__ == "__main__":
    sys.exit(main())
