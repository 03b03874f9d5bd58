"""Something-Something v2, added as one reader file (datamodules/annotations/ssv2.py) plus
one config: its real annotation format, flat <id>.webm videos, no horizontal flip, and
``python -m datamodules check --annotations SSv2``, on a generated SSv2 layout."""

import io
import json
import subprocess
import sys

import pytest

from datamodules.annotations import (
    AnnotationError,
    SSv2,
    read_ssv2,
    read_ssv2_labels,
)
from datamodules.annotations.ssv2 import template_class
from datamodules.check import check_source
from datamodules.synthetic import generate
from tests.conftest import video_datamodule


@pytest.fixture(scope="module")
def ssv2(tmp_path_factory):
    return generate(tmp_path_factory.mktemp("ssv2") / "ssv2", "ssv2", num_classes=4, videos_per_class=6,
                    num_frames=10, size=(64, 48))


def test_generated_layout_has_the_real_format(ssv2):
    labels = json.loads((ssv2.annotation_dir / "labels.json").read_text())
    assert labels == {name: str(i) for i, name in enumerate(ssv2.classes)}
    train = json.loads((ssv2.annotation_dir / "train.json").read_text())
    assert set(train[0]) == {"id", "label", "template", "placeholders"} and "[" in train[0]["template"]
    assert train[0]["id"].isdigit() and (ssv2.video_root / f"{train[0]['id']}.webm").is_file()
    test = json.loads((ssv2.annotation_dir / "test.json").read_text())
    assert test and all(set(row) == {"id"} for row in test)
    assert all(path.parent == ssv2.video_root and path.suffix == ".webm" for path in ssv2.videos)


def test_the_class_is_the_template_without_brackets(ssv2):
    assert template_class("Holding [something] next to [something]") == "Holding something next to something"
    source = SSv2(str(ssv2.annotation_dir))
    assert source.classes() == ssv2.classes and not source.mirrorable
    assert source.splits() == ("train", "validation", "test")
    train = source.records("train")
    rows = json.loads((ssv2.annotation_dir / "train.json").read_text())
    assert [r.video_id for r in train.records] == [row["id"] for row in rows]
    assert [source.classes()[r.label] for r in train.records] == [template_class(row["template"]) for row in rows]
    assert train.records[0].path == f"{rows[0]['id']}.webm"
    assert {r.label for r in source.records("test").records} == {-1}
    assert source.stage_split("val") == source.stage_split("test") == "validation"


def test_bad_files_name_the_file_and_row(tmp_path):
    (tmp_path / "labels.json").write_text(json.dumps({"Pushing something from left to right": "0",
                                                      "Pushing something from right to left": "2"}))
    with pytest.raises(AnnotationError, match=r"labels.json: ids must run 0..1"):
        read_ssv2_labels(tmp_path / "labels.json")
    classes = ["Pushing something from left to right"]
    rows = [{"id": "1", "template": "Pushing [something] from left to right"},
            {"id": "2", "template": "Pushing [something] upwards"}]
    (tmp_path / "train.json").write_text(json.dumps(rows))
    with pytest.raises(AnnotationError, match=r"train.json: row 1 \(id 2\): template .* not in labels.json"):
        read_ssv2(tmp_path / "train.json", classes)
    (tmp_path / "train.json").write_text("{not json")
    with pytest.raises(AnnotationError, match="train.json: not JSON"):
        read_ssv2(tmp_path / "train.json", classes)
    with pytest.raises(FileNotFoundError, match="^annotation_dir: .*validation.json does not exist$"):
        SSv2(str(tmp_path))


def test_ids_cannot_leave_the_video_root(ssv2, tmp_path):
    """A listed id such as ``../x`` is rejected by the index, as in every reader."""
    annotations = tmp_path / "labels"
    annotations.mkdir()
    for name in ("labels.json", "validation.json"):
        (annotations / name).write_bytes((ssv2.annotation_dir / name).read_bytes())
    rows = json.loads((ssv2.annotation_dir / "train.json").read_text())
    escaping = dict(rows[0], id="../../outside")
    (tmp_path / "outside.webm").write_bytes(ssv2.videos[0].read_bytes())
    (annotations / "train.json").write_text(json.dumps(rows + [escaping]))
    out = io.StringIO()
    assert check_source(SSv2(str(annotations)), ssv2.video_root, cache_dir=tmp_path / "cache", out=out) == 1
    train = next(line.split() for line in out.getvalue().splitlines() if line.startswith("train"))
    assert train[1:3] == [str(len(rows) + 1), str(len(rows))] and train[5] == "1"  # listed, usable, rejected


def test_check_command_lists_every_split(ssv2, tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "datamodules", "check", "--annotations", "SSv2",
         "--annotations.annotation_dir", str(ssv2.annotation_dir),
         "--video-root", str(ssv2.video_root), "--cache-dir", str(tmp_path / "cache")],
        check=False, capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stderr
    rows = {line.split()[0]: line.split()[1:] for line in result.stdout.splitlines()[2:]}
    assert set(rows) == {"train", "validation", "test"}
    assert sum(int(row[0]) for row in rows.values()) == len(ssv2.videos)
    assert all(row[0] == row[1] and row[3] == "0" for row in rows.values())  # every video found and readable
    assert rows["train"][2] == "4/4" and rows["test"][2] == "0/4"  # test.json carries no labels


def test_datamodule_reads_webm_clips_without_flipping(ssv2, tmp_path):
    dm = video_datamodule(SSv2(str(ssv2.annotation_dir)), "rgb_clip", frames=4, crop_size=32,
                          video_root=str(ssv2.video_root), short_side=None, test_clips=2, batch_size=2, num_workers=0,
                          pin_memory=False, cache_dir=str(tmp_path / "cache"))
    assert dm.num_classes == 4 and not dm.flip and dm.test_crops == "three"
    dm.setup("fit")
    assert not dm.datasets["train"].augment.flip
    assert len(dm.datasets["val"]) == len(json.loads((ssv2.annotation_dir / "validation.json").read_text()))
    batch = next(iter(dm.train_dataloader()))
    assert dm.on_after_batch_transfer(batch, 0)["rgb"].shape == (2, 3, 4, 32, 32) and batch["label"].min() >= 0
    frame_2d = video_datamodule(SSv2(str(ssv2.annotation_dir)), "rgb", video_root=str(ssv2.video_root),
                                cache_dir=str(tmp_path / "cache"))
    assert frame_2d.test_crops == "five"  # ten crops would mirror
    with pytest.raises(ValueError, match="test.crops: 'ten' mirrors .* SSv2"):
        video_datamodule(SSv2(str(ssv2.annotation_dir)), video_root=str(ssv2.video_root), test_crops="ten")
    flipped = video_datamodule(SSv2(str(ssv2.annotation_dir)), video_root=str(ssv2.video_root), flip=True)
    assert flipped.flip  # the user's explicit choice wins
