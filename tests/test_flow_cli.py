import errno
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image
from test_flow_extract import write_moving_video

import flow.extract
import flow.outputs
from datamodules.synthetic import generate
from flow.__main__ import main
from flow.codec import dequantize
from flow.meta import META_FILE, read_meta
from flow.store import FolderFlowStore

FAST = ["--algorithm", "dis", "--short-side", "32", "--no-progress"]


@pytest.fixture
def video_root(tmp_path):
    root = tmp_path / "videos"
    for name in ["Jump/v_Jump_g01.avi", "Jump/v_Jump_g02.mp4", "Run/v_Run_g01.avi"]:
        write_moving_video(root / name)
    return root


def test_extract_end_to_end_then_resume(tmp_path, video_root):
    (video_root / "Run" / "v_Run_g02.avi").write_bytes(b"\x00" * 1000)
    out = tmp_path / "frames"
    command = [sys.executable, "-m", "flow", "extract", str(video_root), str(out), *FAST, "--workers", "2"]
    first = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert first.returncode == 1, first.stderr
    assert "videos: 3 done, 0 skipped (already complete), 1 failed" in first.stdout
    assert "pairs: 21" in first.stdout and "KiB per pair" in first.stdout and "pairs/s" in first.stdout
    assert "Traceback" not in first.stderr
    failures = (out / "failures_shard0of1.txt").read_text().splitlines()
    assert [line.split("\t")[0] for line in failures] == ["Run/v_Run_g02.avi"]
    assert read_meta(out / "Jump" / "v_Jump_g02").num_flows == 7

    second = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert second.returncode == 1
    assert "videos: 0 done, 3 skipped (already complete), 1 failed" in second.stdout


def test_list_file_and_slurm_shard(tmp_path, video_root, monkeypatch, capsys):
    listing = tmp_path / "trainlist01.txt"
    listing.write_bytes(b"Jump/v_Jump_g01.avi 1\r\nJump/v_Jump_g02.mp4 1\r\nRun/v_Run_g01.avi 2\r\n")
    monkeypatch.setenv("SLURM_ARRAY_TASK_ID", "2")
    monkeypatch.setenv("SLURM_ARRAY_TASK_MIN", "1")
    monkeypatch.setenv("SLURM_ARRAY_TASK_COUNT", "2")
    out = tmp_path / "frames"
    assert main(["extract", str(video_root), str(out), "--list", str(listing), *FAST]) == 0
    assert "videos: 1 done" in capsys.readouterr().out
    # Task 2 of an array 1-2 is shard 1/2: the second of the sorted list.
    assert [p.parent.relative_to(out).as_posix() for p in out.rglob(META_FILE)] == ["Jump/v_Jump_g02"]
    assert (out / "failures_shard1of2.txt").read_text() == ""


@pytest.mark.parametrize(
    ("arguments", "flag"),
    [
        (["--algorithm", "nope"], "--algorithm"),
        (["--shard", "2/2"], "--shard"),
        (["--shard", "x"], "--shard"),
        (["--param", "preset"], "--param"),
        (["--algorithm", "dis", "--param", "colour=red"], "--param"),
        (["--algorithm", "dis", "--param", "preset=slowest"], "--param"),
        (["--short-side", "-1"], "--short-side"),
        (["--quality", "101"], "--quality"),
    ],
)
def test_bad_arguments_name_the_flag(tmp_path, video_root, capsys, arguments, flag):
    with pytest.raises(SystemExit) as exit_info:
        main(["extract", str(video_root), str(tmp_path / "out"), *arguments])
    assert exit_info.value.code == 2
    assert f"argument {flag}" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_unwritable_output_root(tmp_path, video_root, capsys):
    (tmp_path / "file").write_text("a file, not a folder")
    assert main(["extract", str(video_root), str(tmp_path / "file" / "out"), *FAST]) == 3
    err = capsys.readouterr().err
    assert "not writable" in err and err.count("error:") == 1


def test_full_disk_stops_with_one_message(tmp_path, video_root, monkeypatch, capsys):
    def full_disk(path, data):
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(flow.outputs, "write_file", full_disk)
    assert main(["extract", str(video_root), str(tmp_path / "out"), *FAST]) == 3
    captured = capsys.readouterr()
    assert captured.err.count("No space left on device") == 1 and "failed:" not in captured.out + captured.err
    assert not list((tmp_path / "out").rglob(META_FILE))


def test_visualize_png_and_gif(tmp_path, video_root, capsys):
    out = tmp_path / "frames"
    assert main(["extract", str(video_root), str(out), *FAST, "--backward"]) == 0
    folder = out / "Jump" / "v_Jump_g01"
    assert main(["visualize", str(folder), str(tmp_path / "grid.png"), "--max-fields", "6", "--columns", "3"]) == 0
    with Image.open(tmp_path / "grid.png") as image:
        assert image.size == (3 * 43, 2 * 32) and image.mode == "RGB"
    assert main(["visualize", str(folder), str(tmp_path / "one.png"), "--index", "6", "--backward"]) == 0
    with Image.open(tmp_path / "one.png") as image:
        assert image.size == (43, 32)
    assert main(["visualize", str(folder), str(tmp_path / "anim.gif")]) == 0
    with Image.open(tmp_path / "anim.gif") as image:
        assert image.n_frames == 7
    # Rightward motion is red in the Middlebury wheel.
    with Image.open(tmp_path / "grid.png") as image:
        red, green, blue = np.asarray(image, dtype=float).reshape(-1, 3).mean(axis=0)
    assert red > blue and red > green


def test_visualize_folder_without_flow(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert main(["visualize", str(tmp_path / "empty"), str(tmp_path / "x.png")]) == 1
    assert "holds no flow" in capsys.readouterr().err
    assert not (tmp_path / "x.png").exists()


def test_synthetic_ucf101_dataset_from_its_trainlist(tmp_path, capsys):
    dataset = generate(tmp_path / "data", "ucf101", num_classes=2, videos_per_class=3, num_frames=6, size=(32, 24))
    trainlist = dataset.annotation_dir / "trainlist01.txt"
    listed = {line.split()[0].removesuffix(".avi") for line in trainlist.read_text().splitlines() if line.strip()}
    out = tmp_path / "frames"
    arguments = ["--list", str(trainlist), "--algorithm", "dis", "--short-side", "0", "--no-progress"]
    assert main(["extract", str(dataset.video_root), str(out), *arguments]) == 0
    assert f"videos: {len(listed)} done" in capsys.readouterr().out
    assert {p.parent.relative_to(out).as_posix() for p in out.rglob(META_FILE)} == listed
    store = FolderFlowStore(out)
    for video in sorted(v for v in listed if v.startswith("MoveRight/")):
        assert store.meta(video).num_flows == 5 and (store.meta(video).width, store.meta(video).height) == (32, 24)
        assert dequantize(store.read_flow(video, range(5)), store.bound(video))[:, 0].mean() > 0.05
