"""Generating a whole synthetic dataset in one of the real layouts."""

import os
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from datamodules.synthetic import folder
from datamodules.synthetic.classes import make_classes
from datamodules.synthetic.folder import partial_path
from datamodules.synthetic.discovery import layouts
from datamodules.synthetic.render import render_video

DEFAULT_VIDEOS_PER_CLASS = 8
DEFAULT_NUM_FRAMES = 32


@dataclass
class SyntheticDataset:
    """What :func:`generate` wrote.

    ``annotation_dir`` holds the layout's annotation files (for Kinetics the
    folder with ``train.csv``, ``val.csv`` and ``label_map.txt``). ``classes`` is
    in class-index order; ``kinds`` maps each class to ``motion`` or ``appearance``.
    """

    root: Path
    layout: str
    video_root: Path
    annotation_dir: Path
    classes: list[str]
    kinds: dict[str, str]
    videos: list[Path]


def generate(
    out: Path | str,
    layout: str = "ucf101",
    *,
    num_classes: int = 8,
    videos_per_class: int = DEFAULT_VIDEOS_PER_CLASS,
    num_frames: int = DEFAULT_NUM_FRAMES,
    size: tuple[int, int] | None = None,
    fps: float = 25.0,
    seed: int = 0,
    overwrite: bool = False,
) -> SyntheticDataset:
    """Write a synthetic dataset into the empty (or new) folder ``out``.

    Half the classes (rounded up) differ only by motion, the others only by
    appearance; see ``classes.py``. ``size`` is (width, height), by default the
    real dataset's (320x240; 340x256 for Kinetics). The same arguments give the
    same files. ``out/synthetic.json``, written last, records classes, kinds,
    seed and sizes.

    A folder holding a complete dataset with the same settings is reused; one left
    half-written (a killed run) with the same settings is finished. Any other non-empty
    folder raises FileExistsError naming the settings that differ. ``overwrite`` deletes
    a dataset this generator wrote, whatever its settings, and generates anew; it raises
    FileExistsError, deleting nothing, for a folder holding anything else (``folder.py``).
    """
    if layout not in layouts():
        raise ValueError(f"layout must be one of {', '.join(layouts())}; got {layout!r}")
    spec = layouts()[layout]
    width, height = size or spec.default_size
    classes = make_classes(num_classes, spec.class_name)
    check_arguments(spec.min_videos, videos_per_class, num_frames, width, height, fps, seed, layout)
    root = Path(out)
    video_root = root / spec.video_dir
    clips = spec.plan(classes, videos_per_class, seed)
    names = [c.name for c in classes]
    kinds = {c.name: c.kind for c in classes}
    summary = {
        "layout": layout, "seed": seed, "classes": names, "kinds": kinds,
        "videos_per_class": videos_per_class, "num_videos": len(clips), "num_frames": num_frames,
        "width": width, "height": height, "fps": fps,
        "video_root": spec.video_dir, "annotation_dir": spec.annotation_subdir,
    }
    dataset = SyntheticDataset(root, layout, video_root, root / spec.annotation_subdir, names, kinds,
                               [video_root / clip.path for clip in clips])
    state = folder.read_state(root)
    if overwrite and not state.empty:
        folder.clear(state)
    elif state.recorded == summary and state.complete:
        return dataset
    elif state.recorded != summary and not state.empty:
        raise FileExistsError(folder.conflict(state, summary))
    # New, emptied, or half-written with these very settings: write what is missing.
    folder.start(root, summary)
    # A video's content depends only on the seed, its class and its number within
    # the class, not on how many other classes or videos there are.
    numbers = [0] * len(classes)
    for clip, path in zip(clips, dataset.videos):
        class_spec = classes[clip.class_index]
        number = numbers[clip.class_index]
        numbers[clip.class_index] += 1
        if path.exists():  # written (under its own name only once complete) before a kill
            continue
        frames = render_video(class_spec, num_frames, (width, height),
                              class_spec.rng(seed, 0, number), class_spec.rng(seed, 1, clip.background))
        write_video(path, frames, spec.fourcc, fps)
    spec.write_annotations(root, classes, clips)
    folder.finish(root)
    return dataset


def check_arguments(min_videos: int, videos_per_class: int, num_frames: int, width: int, height: int,
                    fps: float, seed: int, layout: str) -> None:
    """Raise ValueError naming the argument (and its command-line option) that is out of range."""
    if videos_per_class < min_videos:
        raise ValueError(f"videos_per_class (--videos-per-class) must be at least {min_videos} for the "
                         f"{layout} layout, so every split has train and test videos; got {videos_per_class}")
    if num_frames < 2:
        raise ValueError(f"num_frames (--frames) must be at least 2 (flow needs a pair); got {num_frames}")
    # MPEG-4 encoders silently drop an odd row or column.
    if width < 16 or height < 16 or width % 2 or height % 2:
        raise ValueError(f"size (--size) must be even and at least 16x16; got {width}x{height}")
    if fps <= 0:
        raise ValueError(f"fps (--fps) must be positive; got {fps}")
    if seed < 0:
        raise ValueError(f"seed (--seed) must be non-negative; got {seed}")


def write_video(path: Path, frames: np.ndarray, fourcc: str, fps: float) -> None:
    """Encode BGR frames (T, H, W, 3) with OpenCV's writer; ``path`` appears only once complete."""
    path.parent.mkdir(parents=True, exist_ok=True)
    height, width = frames.shape[1:3]
    scratch = partial_path(path)
    writer = cv2.VideoWriter(str(scratch), cv2.VideoWriter_fourcc(*fourcc), fps, (width, height))
    if not writer.isOpened():
        raise RuntimeError(f"OpenCV cannot write {fourcc} video to {scratch}")
    for frame in frames:
        writer.write(frame)
    writer.release()
    os.replace(scratch, path)
