"""``python -m datamodules check --config configs/X.yaml [--data.init_args.KEY VALUE ...]``
for the data a training config reads (with the same overrides ``cli.py`` would take), or
``python -m datamodules check --annotations CLASS --annotations.KEY VALUE ... --video-root DIR``
for a source named on the command line (the same object a config's ``annotations:`` block
builds); ``python -m datamodules resize VIDEO_ROOT OUT [...]`` re-encodes videos smaller
(``datamodules/resize_command.py``)."""

from __future__ import annotations

import argparse
import sys

from datamodules import check as check_module
from datamodules.check import check_datamodule, check_source, datamodule_from_config, source_from_flags
from datamodules.resize_command import add_resize_command, run_resize
from datamodules.decoding import READERS
from flow.layout import NAMED_LAYOUTS


# jsonargparse's own lines around the one that names what is wrong.
_BOILERPLATE = ("Expected a", "Given value", "Subtypes", "Errors:", "Parser key", "Does not validate", "Problem with")


def _first_line(error: Exception) -> str:
    """jsonargparse's many-line answer cut to the line that names the setting."""
    lines = [line.strip(" -") for line in str(error).splitlines() if line.strip(" -")]
    named = [line for line in lines if not line.startswith(_BOILERPLATE)]
    if named:
        return named[0]
    if any("dot import path" in line for line in lines):
        return "not a class: UCF101, HMDB51, Kinetics, ListFiles, SSv2, or a class path"
    return lines[0] if lines else type(error).__name__


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m datamodules")
    commands = parser.add_subparsers(dest="command", required=True)
    command = commands.add_parser("check", help="check a downloaded dataset against its annotations",
                                  description=check_module.__doc__,
                                  formatter_class=argparse.RawDescriptionHelpFormatter)
    source = command.add_mutually_exclusive_group(required=True)
    source.add_argument("--config", help="a training config (configs/X.yaml): check its data section; "
                                         "--data.* overrides as for cli.py may follow")
    source.add_argument("--annotations", metavar="CLASS",
                        help="an annotation source, as a config's annotations: block names it (UCF101, HMDB51, "
                             "Kinetics, ListFiles, SSv2, a class path, or a JSON block); its settings follow as "
                             "--annotations.KEY VALUE (--annotations.annotation_dir DIR, --annotations.split 2)")
    command.add_argument("--video-root", help="the folder the listed videos are relative to (with --annotations)")
    command.add_argument("--frames-root", help="one folder of flow/RGB frames per video; checks flow when given")
    command.add_argument("--flow-layout", choices=list(NAMED_LAYOUTS), default="ours",
                         help="file names in flow folders without meta.json")
    command.add_argument("--cache-dir", help="where the index is cached (default <frames or video root>/.index_cache)")
    command.add_argument("--decoder", choices=["auto", *(name for name in READERS if name != "rawframes")],
                         default="auto", help="the reader --decode uses (with --annotations; a config says its own)")
    command.add_argument("--verify", action="store_true",
                         help="open every flow file (every pack's index and members) and check it against meta.json")
    command.add_argument("--decode", action="store_true",
                         help="decode every frame of every video with the data's decoder; name the first frame "
                              "that fails (about 12 ms per second of 320x240 video on one core: docs/faults.md)")
    resize = add_resize_command(commands)
    args, overrides = parser.parse_known_args(argv)
    if args.command == "resize":
        if overrides:
            resize.error(f"unrecognized arguments: {' '.join(overrides)}")
        return run_resize(args, resize)
    key = "--data." if args.config else "--annotations."
    strays = [o for o in overrides if o.startswith("-") and not o.startswith(key)]
    if strays:
        command.error(f"unrecognized arguments: {' '.join(strays)} ({key}* settings go with {key[:-1]})")
    if args.config:
        given = [flag for flag in ("video_root", "frames_root", "cache_dir") if getattr(args, flag) is not None]
        if given:
            command.error(f"--config takes its roots from the config: override them as --data.init_args.roots.* "
                          f"(not --{given[0].replace('_', '-')})")
        try:
            datamodule = datamodule_from_config(args.config, overrides)
        except (OSError, KeyError, ValueError, TypeError, argparse.ArgumentError) as error:
            command.error(f"--config {args.config}: {_first_line(error)}")
        return check_datamodule(datamodule, verify=args.verify, decode=args.decode)
    if args.video_root is None:
        command.error("--annotations needs --video-root")
    if args.verify and args.frames_root is None:
        command.error("--verify opens flow files: give --frames-root")
    try:
        annotations = source_from_flags(args.annotations, overrides)
    except (OSError, KeyError, ValueError, TypeError, argparse.ArgumentError) as error:
        command.error(f"--annotations {args.annotations}: {_first_line(error)}")
    return check_source(annotations, args.video_root, args.frames_root, flow_layout=args.flow_layout,
                        cache_dir=args.cache_dir, verify=args.verify, decoder=args.decoder if args.decode else None)


if __name__ == "__main__":
    sys.exit(main())
