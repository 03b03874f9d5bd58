"""Something-Something v2: ``labels.json``, ``train.json``, ``validation.json``, ``test.json``.

``labels.json`` maps each of the 174 templates, brackets removed, to a string id
(``{"Pushing something from left to right": "93", ...}``); the ids number the classes.
The split files are JSON lists of rows ``{"id": "78687", "label": "holding potato next to
vicks vaporub bottle", "template": "Holding [something] next to [something]",
"placeholders": [...]}``: the class is the template with its brackets removed, looked up
in ``labels.json`` (``label`` is the template filled in with the objects, not a class).
``test.json`` rows carry only ``id`` (label -1). Videos are ``<id>.webm`` (VP9) in one
folder; an id that would leave it (``../x``) is rejected by the index like any such path.

Many classes name a direction ("from left to right", "Turning the camera left while
filming something"): a horizontal flip changes the label, so the source says
``mirrorable = False`` and training does not flip (nor test views mirror).
The test set has no public labels: validation and test both read ``validation.json``.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from datamodules.annotations.records import AnnotationError, Annotations, VideoRecord
from datamodules.annotations.source import AnnotationSource, require_path
from datamodules.synthetic.classes import ClassSpec
from datamodules.synthetic.layouts import Clip, Layout, write_json

LABELS_FILE = "labels.json"
SPLIT_FILES = {"train": "train.json", "validation": "validation.json", "test": "test.json"}


def template_class(template: str) -> str:
    """``"Holding [something] next to [something]"`` -> ``"Holding something next to something"``."""
    return template.replace("[", "").replace("]", "")


def _load(path: Path) -> object:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise AnnotationError(path, f"not JSON ({error})") from None


def read_ssv2_labels(path: Path | str) -> list[str]:
    """labels.json -> class names (templates without brackets) in the order of their ids."""
    path = Path(path)
    labels = _load(path)
    if not isinstance(labels, dict) or not labels:
        raise AnnotationError(path, "expected an object mapping templates to ids")
    numbered: dict[int, str] = {}
    for name, text in labels.items():
        try:
            index = int(text)
        except (TypeError, ValueError):
            raise AnnotationError(path, f"the id of {name!r} is {text!r}, not a number") from None
        if index in numbered:
            raise AnnotationError(path, f"id {index} given to both {numbered[index]!r} and {name!r}")
        numbered[index] = name
    if sorted(numbered) != list(range(len(numbered))):
        raise AnnotationError(path, f"ids must run 0..{len(numbered) - 1} without gaps")
    return [numbered[index] for index in range(len(numbered))]


def read_ssv2(path: Path | str, classes: list[str]) -> Annotations:
    """One split file (train/validation/test.json), labelled by ``classes`` (labels.json's order)."""
    path = Path(path)
    rows = _load(path)
    if not isinstance(rows, list):
        raise AnnotationError(path, "expected a list of rows")
    labels = {name: label for label, name in enumerate(classes)}
    records = []
    for number, row in enumerate(rows):
        where = f"row {number}"
        if not isinstance(row, dict) or not isinstance(row.get("id"), (str, int)) or isinstance(row["id"], bool):
            raise AnnotationError(path, f"{where}: expected an object with an 'id', got {row!r}")
        video_id = str(row["id"]).strip()
        if not video_id:
            raise AnnotationError(path, f"{where}: empty id")
        label = -1
        if "template" in row:
            name = template_class(str(row["template"]))
            if name not in labels:
                raise AnnotationError(path, f"{where} (id {video_id}): template {row['template']!r} is not in "
                                            f"{LABELS_FILE}")
            label = labels[name]
        records.append(VideoRecord(video_id, f"{video_id}.webm", label))
    return Annotations(list(classes), records)


class SSv2Layout(Layout):
    """The synthetic Something-Something v2: ``20bn-something-something-v2/<id>.webm`` (VP9),
    flat, numeric ids; ``labels/`` with ``labels.json`` (template without brackets -> string
    id, ids in alphabetical order), ``train.json`` and ``validation.json`` (rows ``id``,
    ``label``: the template filled in, ``template`` with ``[something]`` brackets,
    ``placeholders``) and ``test.json`` (rows with ``id`` only); about 70/15/15 per class.
    Classes are templates without their brackets (``Something move left``, from the
    template ``[Something] move left``, like its "Something falling like a rock").
    """

    name, fourcc, default_size, min_videos = "ssv2", "VP90", (320, 240), 3
    video_dir, annotation_subdir = "20bn-something-something-v2", "labels"
    objects = ("a box", "a cup", "a pen", "a phone", "a spoon")

    def class_name(self, words: tuple[str, ...]) -> str:
        return "Something " + " ".join(words)

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
        write_json(folder / LABELS_FILE, {spec.name: str(i) for i, spec in enumerate(classes)})
        for split, file in SPLIT_FILES.items():
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
            write_json(folder / file, rows)

    def source_settings(self, annotation_dir: Path) -> dict[str, str]:
        return {"annotation_dir": str(annotation_dir)}


class SSv2(AnnotationSource):
    """Something-Something v2 (174 classes); validates and tests on ``validation.json``.

    Args:
        annotation_dir: folder with labels.json, train.json, validation.json (test.json optional).
    """

    mirrorable = False
    synthetic = SSv2Layout()

    def __init__(self, annotation_dir: str):
        require_path("annotation_dir", annotation_dir, folder=True)
        for name in (LABELS_FILE, SPLIT_FILES["train"], SPLIT_FILES["validation"]):
            require_path("annotation_dir", Path(annotation_dir) / name)
        self.annotation_dir = annotation_dir
        self._classes: list[str] | None = None

    def classes(self) -> list[str]:
        if self._classes is None:
            self._classes = read_ssv2_labels(Path(self.annotation_dir) / LABELS_FILE)
        return self._classes

    def splits(self) -> tuple[str, ...]:
        return tuple(name for name, file in SPLIT_FILES.items() if (Path(self.annotation_dir) / file).is_file())

    def stage_split(self, stage: str) -> str:
        return "train" if stage == "train" else "validation"

    def records(self, split: str) -> Annotations:
        if split not in self.splits():
            raise self._unknown(split)
        return read_ssv2(Path(self.annotation_dir) / SPLIT_FILES[split], self.classes())
