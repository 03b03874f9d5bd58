"""The synthetic dataset: official formats, decodable videos, determinism, and content
that makes motion (and only motion) separate the motion classes."""

import json
import re
from pathlib import Path

import cv2
import decord
import numpy as np
import pytest

from datamodules.synthetic import generate
from datamodules.synthetic import generator as generator_module
from datamodules.synthetic.__main__ import main
from datamodules.synthetic.discovery import synthetic_sources

SMALL = dict(num_classes=4, num_frames=12, size=(64, 48))


def decode(path: Path) -> np.ndarray:
    reader = decord.VideoReader(str(path))
    return reader.get_batch(list(range(len(reader)))).asnumpy()


@pytest.fixture(scope="module")
def datasets(tmp_path_factory):
    root = tmp_path_factory.mktemp("synthetic")
    return {layout: generate(root / layout, layout, videos_per_class=6, **SMALL)
            for layout in ("ucf101", "hmdb51", "kinetics")}


@pytest.mark.parametrize("layout", ["ucf101", "hmdb51", "kinetics"])
def test_videos_decode_to_requested_frames_and_size(datasets, layout):
    dataset = datasets[layout]
    assert len(dataset.videos) == 4 * 6
    suffix = ".mp4" if layout == "kinetics" else ".avi"
    for path in dataset.videos:
        assert path.suffix == suffix and path.is_relative_to(dataset.video_root)
        assert decode(path).shape == (12, 48, 64, 3)
    summary = json.loads((dataset.root / "synthetic.json").read_text())
    assert summary["classes"] == dataset.classes and summary["kinds"] == dataset.kinds
    assert (summary["width"], summary["height"], summary["seed"]) == (64, 48, 0)
    assert sorted(dataset.kinds.values()) == ["appearance"] * 2 + ["motion"] * 2


def test_ucf101_annotations(datasets):
    dataset = datasets["ucf101"]
    folder = dataset.annotation_dir
    assert folder == dataset.root / "ucfTrainTestlist"
    class_ind = (folder / "classInd.txt").read_bytes()
    assert class_ind == b"".join(f"{i} {name}\r\n".encode() for i, name in enumerate(dataset.classes, 1))
    assert all(re.fullmatch(r"[A-Z][A-Za-z]+", name) for name in dataset.classes)
    everything = {p.relative_to(dataset.video_root).as_posix() for p in dataset.videos}
    tested_groups = []
    for k in (1, 2, 3):
        train_bytes = (folder / f"trainlist0{k}.txt").read_bytes()
        test_bytes = (folder / f"testlist0{k}.txt").read_bytes()
        for data in (train_bytes, test_bytes):
            assert data.endswith(b"\r\n") and data.count(b"\n") == data.count(b"\r\n")
        train = dict(line.split(" ") for line in train_bytes.decode().splitlines())
        test = test_bytes.decode().splitlines()
        assert set(train).isdisjoint(test) and set(train) | set(test) == everything
        for path, label in train.items():
            name, file = path.split("/")
            assert re.fullmatch(rf"v_{name}_g\d\d_c\d\d\.avi", file)
            assert dataset.classes[int(label) - 1] == name
        group = lambda path: path.rsplit("_c", 1)[0]  # noqa: E731
        assert {group(p) for p in train}.isdisjoint(group(p) for p in test)
        assert {p.split("/")[0] for p in test} == set(dataset.classes)
        assert {p.split("/")[0] for p in train} == set(dataset.classes)
        tested_groups.append({group(p)[-3:] for p in test})
    assert all(a.isdisjoint(b) for i, a in enumerate(tested_groups) for b in tested_groups[i + 1:])


def test_hmdb51_annotations(datasets):
    dataset = datasets["hmdb51"]
    for name in dataset.classes:
        assert re.fullmatch(r"[a-z]+(_[a-z]+)*", name)
        videos = {p.name for p in (dataset.video_root / name).iterdir()}
        for k in (1, 2, 3):
            data = (dataset.annotation_dir / f"{name}_test_split{k}.txt").read_bytes()
            assert b"\r" not in data
            lines = data.decode().split("\n")
            assert lines.pop() == ""
            assert all(re.fullmatch(r"\S+\.avi [012] ", line) for line in lines)
            flags = {line.split(" ")[0]: line.split(" ")[1] for line in lines}
            assert len(flags) == len(lines) and set(flags) == videos
            assert sorted(flags.values()) == ["1"] * 4 + ["2"] * 2


def test_kinetics_annotations(datasets):
    dataset = datasets["kinetics"]
    folder = dataset.annotation_dir
    assert (folder / "label_map.txt").read_bytes() == "".join(f"{c}\n" for c in dataset.classes).encode()
    seen = []
    for split in ("train", "val"):
        lines = (folder / f"{split}.csv").read_bytes().decode().split("\n")
        assert lines[0] == "label,youtube_id,time_start,time_end,split,is_cc" and lines.pop() == ""
        for line in lines[1:]:
            match = re.fullmatch(r'("[a-z ]+"|[a-z]+),([A-Za-z0-9_-]{11}),(\d+),(\d+),(\w+),0', line)
            assert match, line
            label, youtube_id, start, end, row_split = match.groups()
            assert row_split == split and (" " in label) == label.startswith('"')
            label = label.strip('"')
            assert label in dataset.classes
            path = dataset.video_root / split / label.replace(" ", "_") / f"{youtube_id}_{int(start):06d}_{int(end):06d}.mp4"
            assert path.is_file()
            seen.append(path)
    assert sorted(seen) == sorted(dataset.videos)


def test_every_layout_is_read_by_the_source_that_declares_it(tmp_path):
    """The layouts come from the readers (``AnnotationSource.synthetic``), not from a list,
    and each one's files are read by its own source pointed at them (``source_settings``)."""
    sources = synthetic_sources()
    assert {"ucf101", "hmdb51", "kinetics", "ssv2"} <= set(sources)
    for name, source in sources.items():
        layout = source.synthetic
        dataset = generate(tmp_path / name, name, num_classes=2, videos_per_class=layout.min_videos,
                           num_frames=2, size=(16, 16))
        reader = source(**layout.source_settings(dataset.annotation_dir))
        assert reader.classes() == dataset.classes, name
        for split in reader.splits():
            assert {record.label for record in reader.records(split).records} <= {-1, 0, 1}, (name, split)
        assert reader.records(reader.stage_split("train")).records, name


def test_same_seed_same_frames_other_seed_differs(tmp_path):
    args = dict(videos_per_class=2, num_classes=2, num_frames=4, size=(32, 32))
    first = generate(tmp_path / "a", "hmdb51", **args)
    again = generate(tmp_path / "b", "hmdb51", **args)
    other = generate(tmp_path / "c", "hmdb51", seed=1, **args)
    for a, b, c in zip(first.videos, again.videos, other.videos):
        assert a.read_bytes() == b.read_bytes()
        assert not np.array_equal(decode(a), decode(c))


def test_rerun_with_same_settings_reuses_the_dataset(tmp_path):
    args = dict(videos_per_class=2, num_classes=2, num_frames=4, size=(32, 32))
    first = generate(tmp_path / "a", "hmdb51", **args)
    stamps = [path.stat().st_mtime_ns for path in first.videos]
    again = generate(tmp_path / "a", "hmdb51", **args)
    assert again == first
    assert [path.stat().st_mtime_ns for path in again.videos] == stamps
    with pytest.raises(FileExistsError, match=r"seed \(--seed\): 0 in the folder, 1 requested"):
        generate(tmp_path / "a", "hmdb51", seed=1, **args)


def test_motion_separates_motion_classes_and_colour_appearance_classes(tmp_path):
    dataset = generate(tmp_path / "d", "hmdb51", num_classes=8, videos_per_class=4, num_frames=10, size=(96, 72))
    hue_histograms, mean_flows = {}, {}
    for name in dataset.classes:
        histograms, flows = [], []
        for path in sorted((dataset.video_root / name).iterdir()):
            frames = decode(path)
            hsv = cv2.cvtColor(frames.reshape(-1, 96, 3), cv2.COLOR_RGB2HSV)
            histogram = cv2.calcHist([hsv], [0], cv2.inRange(hsv, (0, 100, 60), (180, 255, 255)), [18], [0, 180])
            histograms.append(histogram.ravel() / histogram.sum())
            gray = [cv2.cvtColor(f, cv2.COLOR_RGB2GRAY) for f in frames]
            flow = [cv2.calcOpticalFlowFarneback(a, b, None, 0.5, 2, 9, 3, 5, 1.1, 0) for a, b in zip(gray, gray[1:])]
            # Mean flow, and its mean outward component (positive when the objects expand).
            ys, xs = np.mgrid[:72, :96]
            outward = np.stack([xs - 47.5, ys - 35.5], -1) / np.hypot(xs - 47.5, ys - 35.5)[..., None]
            flows.append([*np.mean(flow, axis=(0, 1, 2)), np.mean(np.sum(np.array(flow) * outward, -1))])
        hue_histograms[name] = np.mean(histograms, axis=0)
        mean_flows[name] = np.array(flows)
    motion = [n for n in dataset.classes if dataset.kinds[n] == "motion"]
    appearance = [n for n in dataset.classes if dataset.kinds[n] == "appearance"]
    distance = lambda a, b: np.abs(hue_histograms[a] - hue_histograms[b]).sum()  # noqa: E731
    motion_spread = max(distance(a, b) for a in motion for b in motion)
    appearance_gap = min(distance(a, b) for a in appearance for b in appearance if a != b)
    assert motion_spread < 0.5 * appearance_gap, (motion_spread, appearance_gap)
    # (x, y, outward) with image axes: x right, y down. The first motions survive a flip.
    expected = {"move_up": (0, -1, 0), "move_down": (0, 1, 0), "zoom_in": (0, 0, 1), "zoom_out": (0, 0, -1)}
    assert sorted(motion) == sorted(expected)
    for name, direction in expected.items():
        assert (mean_flows[name] @ np.array(direction) > 0.1).all(), (name, mean_flows[name])


def test_cli_summary_and_errors(tmp_path, capsys):
    main([str(tmp_path / "e"), "--layout", "kinetics", "--classes", "2", "--videos-per-class", "2",
          "--frames", "3", "--size", "32x32", "--seed", "3"])
    assert "kinetics: 2 classes (1 motion, 1 appearance), 4 videos" in capsys.readouterr().out
    for bad, option in [(["--classes", "1"], "--classes"), (["--frames", "1"], "--frames"),
                        (["--videos-per-class", "2"], "--videos-per-class"), (["--size", "33x32"], "--size")]:
        with pytest.raises(SystemExit):
            main([str(tmp_path / "f"), "--layout", "ucf101", *bad])
        assert option in capsys.readouterr().err


TINY_ARGS = {"videos_per_class": 2, "num_classes": 2, "num_frames": 4, "size": (32, 32)}
TINY_CLI = ["--layout", "hmdb51", "--videos-per-class", "2", "--classes", "2", "--frames", "4", "--size", "32x32"]


def files(root: Path) -> list[str]:
    return sorted(path.relative_to(root).as_posix() for path in root.rglob("*") if path.is_file())


class Killed(BaseException):
    """Stands for SIGKILL: nothing after it runs, no ``except Exception`` catches it."""


def kill_after_videos(monkeypatch, count: int) -> None:
    """The generator dies while writing video ``count + 1``, leaving a truncated file behind."""
    real = generator_module.write_video
    written = []

    def write_video(path, *args):
        if len(written) == count:
            path.parent.mkdir(parents=True, exist_ok=True)
            generator_module.partial_path(path).write_bytes(b"RIFF truncated")
            raise Killed
        written.append(path)
        real(path, *args)

    monkeypatch.setattr(generator_module, "write_video", write_video)


def test_rerun_after_a_kill_finishes_the_same_dataset(tmp_path, monkeypatch):
    reference = generate(tmp_path / "reference", "hmdb51", **TINY_ARGS)
    with monkeypatch.context() as patch:
        kill_after_videos(patch, 2)
        with pytest.raises(Killed):
            generate(tmp_path / "a", "hmdb51", **TINY_ARGS)
    assert not (tmp_path / "a" / "synthetic.json").exists()
    done = sorted(p for p in (tmp_path / "a").rglob("*.avi") if ".partial" not in p.name)
    assert len(done) == 2
    stamps = [path.stat().st_mtime_ns for path in done]
    finished = generate(tmp_path / "a", "hmdb51", **TINY_ARGS)
    assert [path.stat().st_mtime_ns for path in done] == stamps  # resumed, not redone
    assert files(finished.root) == files(reference.root)
    for path in files(reference.root):
        assert (finished.root / path).read_bytes() == (reference.root / path).read_bytes(), path


def test_half_written_folder_with_other_settings_names_them(tmp_path, monkeypatch, capsys):
    with monkeypatch.context() as patch:
        kill_after_videos(patch, 1)
        with pytest.raises(Killed):
            main([str(tmp_path / "a"), *TINY_CLI])
    with pytest.raises(SystemExit) as exit_info:
        main([str(tmp_path / "a"), *TINY_CLI, "--seed", "3", "--frames", "5"])
    assert exit_info.value.code == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "half-written" in error and "--overwrite" in error
    assert "num_frames (--frames): 4 in the folder, 5 requested" in error
    assert "seed (--seed): 0 in the folder, 3 requested" in error
    assert "--layout" not in error and "--size" not in error


def test_overwrite_replaces_a_dataset_of_other_settings(tmp_path, capsys):
    main([str(tmp_path / "a"), *TINY_CLI])
    main([str(tmp_path / "a"), *TINY_CLI, "--classes", "3", "--seed", "1", "--overwrite"])
    replaced = json.loads((tmp_path / "a" / "synthetic.json").read_text())
    assert (len(replaced["classes"]), replaced["seed"]) == (3, 1)
    fresh = generate(tmp_path / "fresh", "hmdb51", **{**TINY_ARGS, "num_classes": 3, "seed": 1})
    assert files(tmp_path / "a") == files(fresh.root)


def test_overwrite_replaces_a_half_written_dataset(tmp_path, monkeypatch):
    with monkeypatch.context() as patch:
        kill_after_videos(patch, 1)
        with pytest.raises(Killed):
            generate(tmp_path / "a", "hmdb51", **TINY_ARGS)
    dataset = generate(tmp_path / "a", "kinetics", **TINY_ARGS, overwrite=True)
    assert sorted(p.name for p in dataset.root.iterdir()) == ["kinetics", "synthetic.json"]


@pytest.mark.parametrize("foreign", ["user_file", "no_marker", "unexpected_file", "unexpected_folder", "symlink"])
def test_overwrite_refuses_a_folder_the_generator_did_not_write(tmp_path, capsys, foreign):
    out = tmp_path / "out"
    if foreign == "user_file":
        out.mkdir()
        (out / "thesis.tex").write_text("years of work")
    else:
        generate(out, "hmdb51", **TINY_ARGS)
    if foreign == "no_marker":
        (out / "synthetic.json").unlink()
    elif foreign == "unexpected_file":
        (out / "hmdb51" / "notes.txt").write_text("mine")
    elif foreign == "unexpected_folder":
        (out / "flow" / "x").mkdir(parents=True)
    elif foreign == "symlink":
        (tmp_path / "elsewhere").mkdir()
        (out / "hmdb51" / "link").symlink_to(tmp_path / "elsewhere")
    before = sorted(out.rglob("*"))
    with pytest.raises(SystemExit) as exit_info:
        main([str(out), *TINY_CLI, "--seed", "1", "--overwrite"])
    assert exit_info.value.code == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "--overwrite refuses to delete" in error and str(out) in error
    expected = {"user_file": "synthetic.json", "no_marker": "synthetic.json", "unexpected_file": "hmdb51/notes.txt",
                "unexpected_folder": "flow", "symlink": "hmdb51/link"}[foreign]
    assert expected in error
    assert sorted(out.rglob("*")) == before


@pytest.mark.parametrize("overwrite", [[], ["--overwrite"]])
def test_foreign_folder_or_file_is_refused(tmp_path, capsys, overwrite):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "thesis.tex").write_text("years of work")
    for out, message in [(tmp_path / "out", "holds no synthetic.json"), (tmp_path / "out" / "thesis.tex", "is a file")]:
        with pytest.raises(SystemExit) as exit_info:
            main([str(out), *TINY_CLI, *overwrite])
        assert exit_info.value.code == 2
        error = capsys.readouterr().err
        assert error.count("\n") == 1 and message in error and str(out) in error
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["thesis.tex"]
    assert (tmp_path / "out" / "thesis.tex").read_text() == "years of work"
