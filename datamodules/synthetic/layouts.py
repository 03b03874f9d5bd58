"""Where the synthetic videos go and the annotation files that list them, per dataset.

Each layout reproduces its real dataset's folders, file names and annotation
bytes (compare with shared/data/annotations/), so the real readers run unchanged:

- ``ucf101``: ``UCF-101/<Class>/v_<Class>_gGG_cCC.avi``; ``ucfTrainTestlist/`` with
  ``classInd.txt``, ``trainlist0k.txt``, ``testlist0k.txt`` (CRLF). Clips come in
  groups that share a background (the real groups share actor and scene); split k
  tests the k-th block of groups, the last groups are always trained on, as in
  the real splits (7 of 25 groups tested per split, groups 22-25 never).
- ``hmdb51``: ``hmdb51/<class>/<video>.avi``; ``testTrainMulti_7030_splits/
  <class>_test_split{1,2,3}.txt``, lines ``<video>.avi <flag> `` (trailing space, LF),
  flag 1 train / 2 test / 0 unused: about 70/30 per class, one in eight unused.
- ``kinetics``: ``kinetics/<split>/<label_dir>/<youtube_id>_<start:06d>_<end:06d>.mp4``
  with split ``train`` or ``val`` and ``label_dir`` the label with spaces replaced by
  underscores (mmaction2's convention); ``kinetics/annotations/{train,val}.csv``
  (``label,youtube_id,time_start,time_end,split,is_cc``, labels with spaces quoted as
  in the real CSV) and ``label_map.txt`` (one label per line, class-index order).
  Times are nominal 10 s windows as in the real CSV; the clip itself lasts
  ``num_frames / fps``.
- ``ssv2``: ``20bn-something-something-v2/<id>.webm`` (VP9), flat, numeric ids;
  ``labels/`` with ``labels.json`` (template without brackets -> string id, ids in
  alphabetical order), ``train.json`` and ``validation.json`` (rows ``id``, ``label``:
  the template filled in, ``template`` with ``[something]`` brackets, ``placeholders``)
  and ``test.json`` (rows with ``id`` only); about 70/15/15 per class.
"""

import json
import math
import string
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from datamodules.synthetic.classes import ClassSpec

NUM_SPLITS = 3


@dataclass(frozen=True)
class Clip:
    """One video to generate.

    ``path`` is relative to the video root. Clips of one class with the same
    ``background`` share a background. ``splits`` gives the clip's role in each
    split: ``train``, ``test`` or ``unused`` (``val`` for Kinetics' one split).
    """

    path: str
    class_index: int
    background: int
    splits: tuple[str, ...]


class Layout:
    """A dataset's layout on disk: video container, default size, paths, annotation files."""

    name: str
    fourcc: str
    default_size: tuple[int, int]
    min_videos: int
    video_dir: str
    annotation_subdir: str

    def plan(self, classes: list[ClassSpec], videos_per_class: int, seed: int) -> list[Clip]:
        raise NotImplementedError

    def write_annotations(self, out: Path, classes: list[ClassSpec], clips: list[Clip]) -> None:
        raise NotImplementedError


class UCF101(Layout):
    name, fourcc, default_size, min_videos = "ucf101", "XVID", (320, 240), 3
    video_dir, annotation_subdir = "UCF-101", "ucfTrainTestlist"

    def plan(self, classes: list[ClassSpec], videos_per_class: int, seed: int) -> list[Clip]:
        num_groups = min(25, max(3, videos_per_class // 2))
        tested = max(1, num_groups * 7 // 25)
        clips = []
        for index, spec in enumerate(classes):
            for group in range(num_groups):
                splits = tuple("test" if group // tested == k else "train" for k in range(NUM_SPLITS))
                # Clips spread as evenly as possible over the groups, the first ones taking the extra.
                size = videos_per_class // num_groups + (group < videos_per_class % num_groups)
                for clip in range(size):
                    stem = f"v_{spec.name}_g{group + 1:02d}_c{clip + 1:02d}"
                    clips.append(Clip(f"{spec.name}/{stem}.avi", index, group, splits))
        return clips

    def write_annotations(self, out: Path, classes: list[ClassSpec], clips: list[Clip]) -> None:
        folder = out / self.annotation_subdir
        folder.mkdir(parents=True, exist_ok=True)
        write_lines(folder / "classInd.txt", [f"{i + 1} {spec.name}" for i, spec in enumerate(classes)], "\r\n")
        for k in range(NUM_SPLITS):
            train = [f"{c.path} {c.class_index + 1}" for c in clips if c.splits[k] == "train"]
            test = [c.path for c in clips if c.splits[k] == "test"]
            write_lines(folder / f"trainlist{k + 1:02d}.txt", train, "\r\n")
            write_lines(folder / f"testlist{k + 1:02d}.txt", test, "\r\n")


class HMDB51(Layout):
    name, fourcc, default_size, min_videos = "hmdb51", "XVID", (320, 240), 2
    video_dir, annotation_subdir = "hmdb51", "testTrainMulti_7030_splits"
    flags = {"train": 1, "test": 2, "unused": 0}

    def plan(self, classes: list[ClassSpec], videos_per_class: int, seed: int) -> list[Clip]:
        unused = videos_per_class // 8
        test = max(1, round(0.3 * (videos_per_class - unused)))
        roles = ["test"] * test + ["unused"] * unused
        roles += ["train"] * (videos_per_class - len(roles))
        clips = []
        for index, spec in enumerate(classes):
            rng = spec.rng(seed, 2)
            per_split = [rng.permutation(roles).tolist() for _ in range(NUM_SPLITS)]
            for video in range(videos_per_class):
                # Named like the real clips: movie, action, body parts, camera motion,
                # people, viewpoint, quality, counter.
                path = f"{spec.name}/Synthetic_{spec.name}_f_nm_np1_fr_med_{video}.avi"
                clips.append(Clip(path, index, video, tuple(split[video] for split in per_split)))
        return clips

    def write_annotations(self, out: Path, classes: list[ClassSpec], clips: list[Clip]) -> None:
        folder = out / self.annotation_subdir
        folder.mkdir(parents=True, exist_ok=True)
        for index, spec in enumerate(classes):
            own = [c for c in clips if c.class_index == index]
            for k in range(NUM_SPLITS):
                lines = [f"{Path(c.path).name} {self.flags[c.splits[k]]} " for c in own]
                write_lines(folder / f"{spec.name}_test_split{k + 1}.txt", lines, "\n")


class Kinetics(Layout):
    name, fourcc, default_size, min_videos = "kinetics", "mp4v", (340, 256), 2
    video_dir, annotation_subdir = "kinetics", "kinetics/annotations"
    youtube_alphabet = string.ascii_letters + string.digits + "-_"

    def plan(self, classes: list[ClassSpec], videos_per_class: int, seed: int) -> list[Clip]:
        val = max(1, math.ceil(0.25 * videos_per_class))
        clips = []
        for index, spec in enumerate(classes):
            rng = spec.rng(seed, 3)
            for video in range(videos_per_class):
                youtube_id = "".join(rng.choice(list(self.youtube_alphabet), 11))
                start = int(rng.integers(0, 290))
                split = "val" if video < val else "train"
                path = f"{split}/{spec.name.replace(' ', '_')}/{youtube_id}_{start:06d}_{start + 10:06d}.mp4"
                clips.append(Clip(path, index, video, (split,)))
        return clips

    def write_annotations(self, out: Path, classes: list[ClassSpec], clips: list[Clip]) -> None:
        folder = out / self.annotation_subdir
        folder.mkdir(parents=True, exist_ok=True)
        write_lines(folder / "label_map.txt", [spec.name for spec in classes], "\n")
        for split in ("train", "val"):
            rows = []
            for clip in clips:
                if clip.splits[0] == split:
                    label = classes[clip.class_index].name
                    youtube_id, start, end = Path(clip.path).stem.rsplit("_", 2)
                    rows.append((label, youtube_id, int(start), int(end)))
            lines = ["label,youtube_id,time_start,time_end,split,is_cc"]
            lines += [f"{quote(label)},{yid},{start},{end},{split},0" for label, yid, start, end in sorted(rows)]
            write_lines(folder / f"{split}.csv", lines, "\n")


class SSv2(Layout):
    name, fourcc, default_size, min_videos = "ssv2", "VP90", (320, 240), 3
    video_dir, annotation_subdir = "20bn-something-something-v2", "labels"
    objects = ("a box", "a cup", "a pen", "a phone", "a spoon")

    def plan(self, classes: list[ClassSpec], videos_per_class: int, seed: int) -> list[Clip]:
        held_out = max(1, round(0.15 * videos_per_class))
        roles = ["validation"] * held_out + ["test"] * held_out
        roles += ["train"] * (videos_per_class - len(roles))
        # Unique numeric ids in random order, as the real ones (1..220847).
        rng = np.random.default_rng([seed, 4])
        ids = rng.choice(np.arange(1, 220848), size=len(classes) * videos_per_class, replace=False)
        clips = []
        for index, _ in enumerate(classes):
            for video in range(videos_per_class):
                video_id = int(ids[index * videos_per_class + video])
                clips.append(Clip(f"{video_id}.webm", index, video, (roles[video],)))
        return clips

    def write_annotations(self, out: Path, classes: list[ClassSpec], clips: list[Clip]) -> None:
        folder = out / self.annotation_subdir
        folder.mkdir(parents=True, exist_ok=True)
        write_json(folder / "labels.json", {spec.name: str(i) for i, spec in enumerate(classes)})
        for split in ("train", "validation", "test"):
            rows = []
            for clip in clips:
                if clip.splits[0] != split:
                    continue
                video_id = Path(clip.path).stem
                if split == "test":
                    rows.append({"id": video_id})
                    continue
                words = classes[clip.class_index].words
                placeholder = self.objects[clip.background % len(self.objects)]
                rows.append({"id": video_id, "label": f"{placeholder} {' '.join(words)}",
                             "template": "[Something] " + " ".join(words), "placeholders": [placeholder]})
            write_json(folder / f"{split}.json", rows)


LAYOUTS: dict[str, Layout] = {layout.name: layout for layout in (UCF101(), HMDB51(), Kinetics(), SSv2())}


def write_json(path: Path, data: object) -> None:
    """JSON as the real SSv2 files are written: one line, ``", "`` separators."""
    path.write_text(json.dumps(data), encoding="utf-8")


def quote(label: str) -> str:
    """Quote a label the way the real Kinetics CSV does: exactly those with a space."""
    return f'"{label}"' if " " in label else label


def write_lines(path: Path, lines: list[str], ending: str) -> None:
    """Write lines each ended by ``ending``, bytes as given (no newline translation)."""
    path.write_bytes("".join(line + ending for line in lines).encode())
