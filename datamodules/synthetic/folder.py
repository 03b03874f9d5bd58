"""The generator's output folder: what it holds, and whether it may be reused, resumed or replaced.

Two marker files say that the generator wrote a folder, and with which settings (the
summary :func:`generate` records): ``synthetic.incomplete.json`` is written before the
first video and renamed to ``synthetic.json`` once the last file is written, so a
folder holds at most one of them. Videos are written under a temporary name and
renamed, so a video file under its own name is complete.

Replacing a folder (``--overwrite``) deletes only what the generator would have
written with the recorded settings, and refuses when the folder holds anything
else: a mistyped OUT (a home directory, a real dataset) is never deleted.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from datamodules.synthetic.classes import make_classes
from datamodules.synthetic.discovery import layouts

COMPLETE = "synthetic.json"
INCOMPLETE = "synthetic.incomplete.json"
PARTIAL = ".partial"  # infix of a video being written: v_X.partial.avi


def partial_path(path: Path) -> Path:
    """Where a video is written before it is renamed to ``path`` (same suffix: it picks the container)."""
    return path.with_name(f"{path.stem}{PARTIAL}{path.suffix}")


@dataclass(frozen=True)
class FolderState:
    """``empty``: new or empty; ``recorded``: the settings a marker holds (None without a
    readable one); ``complete``: the marker is ``synthetic.json``."""

    root: Path
    empty: bool
    recorded: dict | None
    complete: bool


def read_state(root: Path) -> FolderState:
    if root.exists() and not root.is_dir():
        raise FileExistsError(f"out must be a folder; {root} is a file")
    # A marker's scratch copy alone is a run killed before its first file: as good as empty.
    if not root.exists() or all(path.name == f"{INCOMPLETE}.tmp" for path in root.iterdir()):
        return FolderState(root, True, None, False)
    for name, complete in ((COMPLETE, True), (INCOMPLETE, False)):
        try:
            recorded = json.loads((root / name).read_text())
        except (OSError, ValueError):
            continue
        if isinstance(recorded, dict):
            return FolderState(root, False, recorded, complete)
    return FolderState(root, False, None, False)


def start(root: Path, summary: dict) -> None:
    """Mark ``root`` as a dataset being generated with ``summary``'s settings."""
    root.mkdir(parents=True, exist_ok=True)
    write_atomically(root / INCOMPLETE, json.dumps(summary, indent=2) + "\n")


def finish(root: Path) -> None:
    os.replace(root / INCOMPLETE, root / COMPLETE)


def write_atomically(path: Path, text: str) -> None:
    scratch = path.with_name(path.name + ".tmp")
    scratch.write_text(text)
    os.replace(scratch, path)


def user_settings(summary: dict) -> dict[str, object]:
    """The settings a user chooses, named as ``generate`` and the command line name them."""
    classes = summary.get("classes")
    return {
        "layout (--layout)": summary.get("layout"),
        "num_classes (--classes)": len(classes) if isinstance(classes, list) else None,
        "videos_per_class (--videos-per-class)": summary.get("videos_per_class"),
        "num_frames (--frames)": summary.get("num_frames"),
        "size (--size)": f"{summary.get('width')}x{summary.get('height')}",
        "fps (--fps)": summary.get("fps"),
        "seed (--seed)": summary.get("seed"),
    }


def conflict(state: FolderState, summary: dict) -> str:
    """Why ``state.root`` cannot take a dataset with ``summary``'s settings, and what to do."""
    root = state.root
    if state.recorded is None:
        return (f"out must be a new or empty folder (or one this generator wrote); {root} is not empty and "
                f"holds no {COMPLETE} or {INCOMPLETE}: choose another folder")
    old, new = user_settings(state.recorded), user_settings(summary)
    differences = [f"{name}: {old[name]} in the folder, {new[name]} requested" for name in new if old[name] != new[name]]
    if not differences:  # same options, other content: written by another version of the generator
        differences = [f"{key} differs" for key in sorted(set(summary) | set(state.recorded))
                       if summary.get(key) != state.recorded.get(key)]
    what = "a synthetic dataset" if state.complete else "a half-written synthetic dataset"
    return (f"{root} holds {what} generated with other settings ({'; '.join(differences)}): rerun with its "
            f"settings to {'reuse' if state.complete else 'finish'} it, or pass --overwrite (overwrite=True) "
            f"to delete it and generate anew")


def expected_files(recorded: dict) -> set[str]:
    """Every file the generator writes with the recorded settings (relative, POSIX), including
    the markers and videos still under their temporary names."""
    spec = layouts()[recorded["layout"]]
    classes = make_classes(len(recorded["classes"]), spec.class_name)
    clips = spec.plan(classes, int(recorded["videos_per_class"]), int(recorded["seed"]))
    files = {COMPLETE, INCOMPLETE, f"{INCOMPLETE}.tmp"}
    for clip in clips:
        video = Path(spec.video_dir) / clip.path
        files |= {video.as_posix(), partial_path(video).as_posix()}
    # The annotation files' names are what write_annotations writes: ask it, in a scratch folder.
    with tempfile.TemporaryDirectory() as scratch:
        spec.write_annotations(Path(scratch), classes, clips)
        files |= {path.relative_to(scratch).as_posix() for path in Path(scratch).rglob("*") if path.is_file()}
    return files


def clear(state: FolderState) -> None:
    """Delete the dataset in ``state.root`` (the folder itself stays), or raise FileExistsError,
    deleting nothing, when the folder holds anything the generator would not have written."""
    root = state.root
    refusal = f"--overwrite refuses to delete {root}"
    if state.recorded is None:
        raise FileExistsError(f"{refusal}: it holds no {COMPLETE} or {INCOMPLETE}, so this generator did not "
                              f"write it")
    try:
        expected = expected_files(state.recorded)
    except (KeyError, TypeError, ValueError) as error:
        raise FileExistsError(f"{refusal}: its {COMPLETE} does not describe a dataset this generator "
                              f"writes ({error})") from None
    folders = {parent.as_posix() for name in expected for parent in Path(name).parents}
    files, subfolders, unexpected = [], [], []
    for current, dirnames, filenames in os.walk(root):
        for name in sorted(dirnames):
            path = Path(current, name)
            relative = path.relative_to(root).as_posix()
            if path.is_symlink() or relative not in folders:
                unexpected.append(relative + ("" if path.is_symlink() else "/"))
                dirnames.remove(name)  # neither look inside nor delete it
            else:
                subfolders.append(path)
        for name in filenames:
            path = Path(current, name)
            relative = path.relative_to(root).as_posix()
            if path.is_symlink() or relative not in expected:
                unexpected.append(relative)
            else:
                files.append(path)
    if unexpected:
        listed = ", ".join(sorted(unexpected)[:5]) + (f" and {len(unexpected) - 5} more" if len(unexpected) > 5 else "")
        raise FileExistsError(f"{refusal}: it holds what this generator did not write: {listed}")
    for path in files:
        path.unlink()
    for folder in sorted(subfolders, key=lambda path: len(path.parts), reverse=True):
        folder.rmdir()
