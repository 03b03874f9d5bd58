import io
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from datamodules.__main__ import main
from datamodules.check import check
from datamodules.synthetic import generate
from flow.meta import FlowMeta, write_meta
from tests.conftest import REAL_ANNOTATIONS

REAL = REAL_ANNOTATIONS


def _rows(text: str) -> dict[str, list[str]]:
    """The table's rows by subset name; header under "subset"."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("subset"))
    rows = {}
    for line in lines[start:]:
        if not line.strip() or line.split()[0].endswith(":"):  # the problem lists below the table
            break
        cells = line.split()
        rows[cells[0]] = cells[1:]
    return rows


def test_cli_prints_the_table_for_a_generated_dataset(tmp_path):
    data = generate(tmp_path / "ucf", "ucf101", num_classes=2, videos_per_class=3, num_frames=8, size=(64, 48))
    frames = tmp_path / "frames"
    video_id = data.videos[0].relative_to(data.video_root).with_suffix("").as_posix()
    (frames / video_id).mkdir(parents=True)
    write_meta(frames / video_id, FlowMeta("dis", {}, 20.0, 95, 64, 48, 8, 7, 25.0, "v.avi"))
    result = subprocess.run(
        [sys.executable, "-m", "datamodules", "check", "--dataset", "ucf101",
         "--annotations", str(data.annotation_dir), "--video-root", str(data.video_root),
         "--frames-root", str(frames), "--split", "1", "--cache-dir", str(tmp_path / "cache")],
        check=False, capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 1, result.stderr  # videos without flow are problems
    rows = _rows(result.stdout)
    assert rows["subset"][:4] == ["listed", "usable", "classes", "missing"]
    listed = {subset: int(rows[subset][0]) for subset in ("train", "test")}
    assert sum(listed.values()) == 6
    # One video has flow: it is usable, the others lack flow; the decoder agrees with meta.json.
    subset = "train" if video_id in (data.annotation_dir / "trainlist01.txt").read_text() else "test"
    assert rows[subset][1] == "1" and rows[subset][6] == str(listed[subset] - 1) and rows[subset][8] == "0"
    # The first videos of each kind are printed with their reason, the list file has them all.
    other = next(path for path in data.videos[1:]).relative_to(data.video_root).with_suffix("").as_posix()
    assert f"  {other}: no flow folder or pack: {frames.resolve() / other}" in result.stdout
    assert "problems found: exit status 1" in result.stdout


def test_kinetics_folder_of_csvs_with_a_missing_clip(tmp_path):
    data = generate(tmp_path / "k", "kinetics", num_classes=2, videos_per_class=3, num_frames=6, size=(64, 48))
    train_clip = next(path for path in data.videos if "/train/" in path.as_posix())
    train_clip.unlink()
    out = io.StringIO()
    status = check("kinetics", data.annotation_dir, data.video_root, label_map=data.annotation_dir / "label_map.txt",
                   cache_dir=tmp_path / "cache", out=out)
    assert status == 1
    rows = _rows(out.getvalue())
    assert rows["train"][:4] == ["4", "3", "2/2", "1"] and rows["val"][:4] == ["2", "2", "2/2", "0"]
    problems = Path(out.getvalue().split("  train: ")[1].split()[0]).read_text()
    # The list names the clip and where it was looked for (the detail column).
    row = next(line.split("\t") for line in problems.splitlines() if train_clip.stem in line)
    assert row[0] == "missing" and row[2].startswith(f"no file {data.video_root}") and "other places" in row[2]


def test_unreadable_annotations_exit_non_zero(tmp_path, capsys):
    (tmp_path / "classInd.txt").write_text("1 A\nB\n")
    for name in ("trainlist01.txt", "testlist01.txt"):
        (tmp_path / name).write_text("A/v_A_g01_c01.avi 1\n")
    assert check("ucf101", tmp_path, tmp_path, cache_dir=tmp_path / "cache") == 2
    assert "classInd.txt:2:" in capsys.readouterr().err
    assert check("kinetics", tmp_path / "nothing.csv", tmp_path, cache_dir=tmp_path / "cache") == 2


def test_real_hmdb51_lists_without_videos(tmp_path):
    out = io.StringIO()
    assert check("hmdb51", REAL / "hmdb51", tmp_path / "videos", split=2, cache_dir=tmp_path / "cache", out=out) == 1
    rows = _rows(out.getvalue())
    assert rows["train"][:4] == ["3570", "0", "0/51", "3570"] and rows["test"][:4] == ["1530", "0", "0/51", "1530"]


def test_check_a_training_config(ucf101_tiny, tmp_path, capsys):
    """``check --config`` checks the data a training config reads (here a multi-dataset one)."""
    data, frames = ucf101_tiny
    ucf = {"class_path": "datamodules.UCF101DataModule",
           "init_args": {"annotation_dir": str(data.annotation_dir), "video_root": str(data.video_root),
                         "frames_root": str(frames), "cache_dir": str(tmp_path / "cache")}}
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump({"data": {"class_path": "datamodules.MultiDataModule",
                                               "init_args": {"datamodules": [ucf, ucf]}}}))
    assert main(["check", "--config", str(config)]) == 0
    out = capsys.readouterr().out
    assert out.count("subset  listed") == 2 and "flow missing" in out
    with pytest.raises(SystemExit):
        main(["check", "--dataset", "ucf101"])


def test_check_a_config_uses_its_datamodule_with_command_line_overrides(ucf101_tiny, tmp_path, capsys):
    """``check --config`` builds the config's own DataModule and source, and takes the same
    ``--data.*`` overrides as ``cli.py`` (the YAML's roots here do not exist)."""
    data, _ = ucf101_tiny
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump({"data": {"class_path": "datamodules.VideoDataModule", "init_args": {
        "annotations": {"class_path": "datamodules.annotations.UCF101",
                        "init_args": {"annotation_dir": str(data.annotation_dir)}},
        "video_root": str(tmp_path / "absent"), "modality": "rgb", "cache_dir": str(tmp_path / "cache")}}}))
    with pytest.raises(SystemExit):
        main(["check", "--config", str(config)])
    assert "video_root" in capsys.readouterr().err
    assert main(["check", "--config", str(config), "--data.init_args.video_root", str(data.video_root),
                 "--data.init_args.annotations.init_args.split", "2"]) == 0
    out = capsys.readouterr().out
    rows = _rows(out)
    assert int(rows["train"][0]) + int(rows["test"][0]) == len(data.videos) and rows["test"][3] == "0"
    assert "UCF101" in out
    with pytest.raises(SystemExit):
        main(["check", "--dataset", "ucf101", "--data.init_args.video_root", "x"])
