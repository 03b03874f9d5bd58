import io
import re
import shutil
import subprocess
import sys
from pathlib import Path

import av
import numpy as np
import pytest
import yaml

from datamodules.__main__ import main
from datamodules.annotations import HMDB51, UCF101, Kinetics, ListFiles, read_list_file
from datamodules.annotations.records import AnnotationError
from datamodules.check import COLUMNS, check_source
from datamodules.synthetic import generate
from flow.meta import FlowMeta, write_meta
from flow.pack_convert import pack_video
from flow.packed import pack_path
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
        [sys.executable, "-m", "datamodules", "check", "--annotations", "UCF101",
         "--annotations.annotation_dir", str(data.annotation_dir), "--annotations.split", "1",
         "--video-root", str(data.video_root), "--frames-root", str(frames), "--cache-dir", str(tmp_path / "cache")],
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
    source = Kinetics(str(data.annotation_dir / "train.csv"), str(data.annotation_dir / "val.csv"),
                      label_map=str(data.annotation_dir / "label_map.txt"))
    status = check_source(source, data.video_root, cache_dir=tmp_path / "cache", out=out)
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
    assert check_source(UCF101(str(tmp_path)), tmp_path, cache_dir=tmp_path / "cache") == 2
    assert "classInd.txt:2:" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["check", "--annotations", "Kinetics", "--annotations.train_csv", str(tmp_path / "nothing.csv"),
              "--annotations.val_csv", str(tmp_path / "nothing.csv"), "--video-root", str(tmp_path)])
    assert capsys.readouterr().err.splitlines()[-1] == (
        f"python -m datamodules check: error: --annotations Kinetics: train_csv: {tmp_path / 'nothing.csv'} does not exist")


def test_real_hmdb51_lists_without_videos(tmp_path):
    out = io.StringIO()
    source = HMDB51(str(REAL / "hmdb51"), split=2)
    assert check_source(source, tmp_path / "videos", cache_dir=tmp_path / "cache", out=out) == 1
    rows = _rows(out.getvalue())
    assert rows["train"][:4] == ["3570", "0", "0/51", "3570"] and rows["test"][:4] == ["1530", "0", "0/51", "1530"]


def _ucf_block(annotation_dir: Path, **roots: str) -> dict:
    """A config's ``data:`` block for one UCF-101 VideoDataModule."""
    return {"class_path": "datamodules.VideoDataModule", "init_args": {
        "annotations": {"class_path": "datamodules.annotations.UCF101",
                        "init_args": {"annotation_dir": str(annotation_dir)}},
        "roots": roots}}


def test_check_a_training_config(ucf101_tiny, tmp_path, capsys):
    """``check --config`` checks the data a training config reads (here a multi-dataset one)."""
    data, frames = ucf101_tiny
    ucf = _ucf_block(data.annotation_dir, video_root=str(data.video_root), frames_root=str(frames),
                     cache_dir=str(tmp_path / "cache"))
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump({"data": {"class_path": "datamodules.MultiDataModule",
                                               "init_args": {"datamodules": [ucf, ucf]}}}))
    assert main(["check", "--config", str(config)]) == 0
    out = capsys.readouterr().out
    assert out.count("subset  listed") == 2 and "flow missing" in out
    for argv in (["check"], ["check", "--config", str(config), "--annotations", "UCF101"],
                 ["check", "--config", str(config), "--video-root", "x"]):
        with pytest.raises(SystemExit):
            main(argv)
    assert "override them as --data.init_args.roots.*" in capsys.readouterr().err


def test_check_a_config_uses_its_datamodule_with_command_line_overrides(ucf101_tiny, tmp_path, capsys):
    """``check --config`` builds the config's own DataModule and source, and takes the same
    ``--data.*`` overrides as ``cli.py`` (the YAML's video root does not exist)."""
    data, _ = ucf101_tiny
    config = tmp_path / "config.yaml"
    block = _ucf_block(data.annotation_dir, video_root=str(tmp_path / "absent"), cache_dir=str(tmp_path / "cache"))
    config.write_text(yaml.safe_dump({"data": block}))
    assert main(["check", "--config", str(config)]) == 1  # every video missing
    assert f"no file {tmp_path / 'absent'}" in capsys.readouterr().out
    assert main(["check", "--config", str(config), "--data.init_args.roots.video_root", str(data.video_root),
                 "--data.init_args.annotations.init_args.split", "2"]) == 0
    out = capsys.readouterr().out
    rows = _rows(out)
    assert int(rows["train"][0]) + int(rows["test"][0]) == len(data.videos) and rows["test"][3] == "0"
    assert "UCF101" in out
    with pytest.raises(SystemExit):
        main(["check", "--annotations", "UCF101", "--data.init_args.roots.video_root", "x"])
    assert "--annotations.* settings go with --annotations" in capsys.readouterr().err


def test_the_flag_form_builds_the_source_a_config_builds(ucf101_tiny, tmp_path, capsys):
    """``--annotations CLASS --annotations.KEY VALUE`` is a config's ``annotations:`` block on
    the command line: the same class, the same settings, the same one-line refusals."""
    data, _ = ucf101_tiny
    flags = ["check", "--annotations", "UCF101", "--annotations.annotation_dir", str(data.annotation_dir),
             "--video-root", str(data.video_root), "--cache-dir", str(tmp_path / "cache")]
    assert main([*flags, "--annotations.split", "2"]) == 0
    assert "UCF101, videos" in capsys.readouterr().out
    for extra, message in ((["--annotations.split", "4"], "split: the official splits are 1, 2 and 3, got 4"),
                           (["--annotations.bogus", "1"], "Option 'bogus' is not accepted")):
        with pytest.raises(SystemExit):
            main([*flags, *extra])
        assert capsys.readouterr().err.splitlines()[-1].endswith(f"--annotations UCF101: {message}")
    with pytest.raises(SystemExit):
        main(["check", "--annotations", "NoSuchSource", "--video-root", str(data.video_root)])
    assert "not a class: UCF101, HMDB51, Kinetics, ListFiles, SSv2, or a class path" in capsys.readouterr().err


# --- The doctor tells the whole truth (issue 12): real generated data, then corrupted. ---


def _copy_dataset(ucf101_tiny, tmp_path: Path) -> tuple[Path, Path, Path]:
    """A private copy of the tiny UCF-101 layout and its flow (12 frames, 11 fields, meta.json)."""
    data, frames = ucf101_tiny
    videos, flow = tmp_path / "videos", tmp_path / "flow"
    shutil.copytree(data.video_root, videos)
    shutil.copytree(frames, flow, ignore=shutil.ignore_patterns(".index_cache", "failures*"))
    return data.annotation_dir, videos, flow


def _video_ids(flow: Path) -> list[str]:
    return sorted(path.parent.relative_to(flow).as_posix() for path in flow.rglob("meta.json"))


def _check(annotations: Path, videos: Path, flow: Path, cache: Path, *flags: str) -> int:
    return main(["check", "--annotations", "UCF101", "--annotations.annotation_dir", str(annotations),
                 "--video-root", str(videos), "--frames-root", str(flow), "--cache-dir", str(cache), *flags])


def _totals(out: str) -> dict[str, int]:
    """Table columns summed over the subsets ("-" counts as 0)."""
    rows = _rows(out)
    rows.pop("subset")
    return {name: sum(int(row[i]) if row[i].isdigit() else 0 for row in rows.values())
            for i, name in enumerate(COLUMNS[1:]) if name != "classes"}


def _drop_meta(folder: Path) -> None:
    (folder / "meta.json").unlink()


def test_exit_status_is_0_when_clean_and_1_with_problems(ucf101_tiny, tmp_path, capfd):
    annotations, videos, flow = _copy_dataset(ucf101_tiny, tmp_path)
    assert _check(annotations, videos, flow, tmp_path / "cache1", "--verify") == 0
    out = capfd.readouterr().out
    assert "problems found" not in out and _totals(out)["usable"] == 16
    assert _rows(out)["train"][-2:] == ["0", "-"]  # --verify ran: a number, not "-"; --decode did not
    victim = _video_ids(flow)[3]
    next(videos.glob(f"{victim}.*")).unlink()
    assert _check(annotations, videos, flow, tmp_path / "cache2") == 1
    out = capfd.readouterr().out
    assert f"  {victim}: no file {videos.resolve() / victim}.avi" in out and "1 problem found" in out


def test_an_unreadable_video_gives_its_reason_and_no_decoder_noise(ucf101_tiny, tmp_path, capfd):
    """decord's C++ log line ("video_reader.cc:83: ERROR opening ...") stays off fd 2; the
    table's list says why the video is unreadable."""
    annotations, videos, flow = _copy_dataset(ucf101_tiny, tmp_path)
    victim = _video_ids(flow)[0]
    path = next(videos.glob(f"{victim}.*"))
    path.write_bytes(b"not a video" * 100)
    assert _check(annotations, videos, flow, tmp_path / "cache") == 1
    captured = capfd.readouterr()
    assert "video_reader.cc" not in captured.err and "ERROR opening" not in captured.err, captured.err
    assert _totals(captured.out)["unreadable"] == 1
    line = next(line for line in captured.out.splitlines() if line.startswith(f"  {victim}: "))
    assert str(path.resolve()) in line and "Invalid data found when processing input" in line
    log = Path(captured.out.split("decoder messages (kept off the terminal): ")[1].split()[0])
    assert "video_reader.cc" in log.read_text()


def test_verify_opens_every_flow_file_and_pack_member(ucf101_tiny, tmp_path, capfd):
    """meta.json says complete, the files say otherwise: only --verify can tell."""
    annotations, videos, flow = _copy_dataset(ucf101_tiny, tmp_path)
    truncated, eoi_cut, deleted, packed = _video_ids(flow)[:4]
    jpeg = flow / truncated / "flow_x_00003.jpg"
    jpeg.write_bytes(jpeg.read_bytes()[:200])  # a copy cut short
    jpeg = flow / eoi_cut / "flow_y_00007.jpg"
    jpeg.write_bytes(jpeg.read_bytes()[:-2])  # only the end marker lost: OpenCV still decodes it
    (flow / deleted / "flow_y_00005.jpg").unlink()
    pack = pack_path(flow, packed)
    pack_video(flow / packed, pack)
    shutil.rmtree(flow / packed)
    data = bytearray(pack.read_bytes())
    member = data.index(b"flow_x_00002.jpg") + len(b"flow_x_00002.jpg") + 200  # inside its JPEG bytes
    data[member] ^= 0xFF
    pack.write_bytes(bytes(data))

    assert _check(annotations, videos, flow, tmp_path / "cache") == 0  # meta.json trusted
    assert _totals(capfd.readouterr().out)["usable"] == 16
    assert _check(annotations, videos, flow, tmp_path / "cache", "--verify") == 1
    out = capfd.readouterr().out
    totals = _totals(out)
    assert totals["usable"] == 12 and totals["flow damaged"] == 4
    reasons = {line.split(": ", 1)[0].strip(): line for line in out.splitlines() if line.startswith("  ")}
    assert "flow_x_00003.jpg" in reasons[truncated]
    assert "flow_y_00007.jpg: truncated JPEG" in reasons[eoi_cut]
    assert "1 of the 22 files meta.json's 11 fields need are missing: flow_y_00005.jpg" in reasons[deleted]
    assert "flow_x_00002.jpg" in reasons[packed] and "CRC" in reasons[packed]
    assert "damaged flow" in out


def test_a_missing_flow_y_beside_its_flow_x_is_seen_without_verify(ucf101_tiny, tmp_path, capfd):
    annotations, videos, flow = _copy_dataset(ucf101_tiny, tmp_path)
    victim = _video_ids(flow)[0]
    _drop_meta(flow / victim)  # a third-party folder: the index counts flow_x names
    (flow / victim / "flow_y_00004.jpg").unlink()
    assert _check(annotations, videos, flow, tmp_path / "cache") == 1
    out = capfd.readouterr().out
    assert _totals(out)["flow damaged"] == 1 and _totals(out)["flow no meta"] == 1
    assert "flow_y_00004.jpg is missing beside flow_x_00004.jpg (11 x files, 3 whole fields)" in out


def _renumber(folder: Path, shift: int, prefix: str = "flow_") -> None:
    """Renumber a folder's flow files by ``shift`` and rename ``flow_x_``/``flow_y_`` to
    ``prefix`` + ``x_``/``y_`` (0-based denseflow, mmaction2's x_ files)."""
    names = sorted(path.name for path in folder.glob("flow_[xy]_*.jpg"))
    for name in names if shift <= 0 else reversed(names):
        axis, number = name[5], int(name[7:12])
        (folder / name).rename(folder / f"{prefix}{axis}_{number + shift:05d}.jpg")


def test_a_one_based_reader_on_a_zero_based_folder_is_flagged_with_the_layout(ucf101_tiny, tmp_path, capfd):
    """Every field would be read one place late (and the list's count would be one more than
    the fields read): the check names the layout the folder follows."""
    annotations, videos, flow = _copy_dataset(ucf101_tiny, tmp_path)
    victim = _video_ids(flow)[0]
    _drop_meta(flow / victim)
    _renumber(flow / victim, -1)  # flow_x_00000.jpg ... flow_x_00010.jpg, as denseflow writes
    assert _check(annotations, videos, flow, tmp_path / "cache1") == 1
    out = capfd.readouterr().out
    assert _totals(out)["other layout"] == 1
    assert ("the folder holds 11 fields flow_x_00000.jpg..flow_x_00010.jpg (--flow-layout denseflow reads them); "
            "the reader's layout (flow_x_{:05d}.jpg from 1) reads 10, each one field late") in out
    assert "flow layout: 1 folders follow --flow-layout denseflow, not the reader's (ours)" in out
    # Told the right layout, the folder is fine (the others have meta.json, which wins).
    assert _check(annotations, videos, flow, tmp_path / "cache2", "--flow-layout", "denseflow", "--verify") == 0
    capfd.readouterr()


def test_a_zero_based_reader_on_a_one_based_folder_gets_the_hint(ucf101_tiny, tmp_path, capfd):
    annotations, videos, flow = _copy_dataset(ucf101_tiny, tmp_path)
    victim = _video_ids(flow)[0]
    _drop_meta(flow / victim)
    assert _check(annotations, videos, flow, tmp_path / "cache", "--flow-layout", "denseflow") == 1
    out = capfd.readouterr().out
    assert _totals(out)["flow missing"] == 1
    assert ("no meta.json and no flow_x_00000.jpg/flow_y_00000.jpg; the folder holds 11 fields "
            "flow_x_00001.jpg..flow_x_00011.jpg (--flow-layout ours reads them)") in out


def test_the_wrong_flow_layout_names_the_x_files_it_found(ucf101_tiny, tmp_path, capfd):
    annotations, videos, flow = _copy_dataset(ucf101_tiny, tmp_path)
    victim = _video_ids(flow)[0]
    _drop_meta(flow / victim)
    _renumber(flow / victim, 0, prefix="")  # x_00001.jpg, y_00001.jpg: mmaction2's flow
    assert _check(annotations, videos, flow, tmp_path / "cache1") == 1
    out = capfd.readouterr().out
    assert ("no meta.json and no flow_x_00001.jpg/flow_y_00001.jpg; the folder holds 11 fields "
            "x_00001.jpg..x_00011.jpg (--flow-layout mmaction2 reads them); the reader's layout "
            "(flow_x_{:05d}.jpg from 1) reads 0") in out
    assert "give --flow-layout mmaction2" in out
    assert _check(annotations, videos, flow, tmp_path / "cache2", "--flow-layout", "mmaction2", "--verify") == 0
    capfd.readouterr()


def test_rawframe_list_counts_are_checked_against_the_flow(ucf101_tiny, tmp_path, capfd):
    """A list's total_frames is the frame count (12) or, in mmaction2's flow lists, the
    field count (11); anything else disagrees, with meta.json or without."""
    _, _, flow = _copy_dataset(ucf101_tiny, tmp_path)
    ids = _video_ids(flow)
    for video_id in ids[3:5]:
        _drop_meta(flow / video_id)
    _renumber(flow / ids[4], -1)  # 0-based: a 1-based reader counts 10 fields where the list says 11
    listed = tmp_path / "rawframes.txt"
    counts = [12, 11, 20, 5, 11]  # frames, fields, wrong (meta.json), wrong (no meta.json), shifted
    listed.write_text("".join(f"{video_id} {count} 0\n" for video_id, count in zip(ids, counts)))
    source = ListFiles(str(listed), test_list=str(listed), list_kind="rawframes")
    status = check_source(source, tmp_path / "videos", flow, cache_dir=tmp_path / "cache")
    out = capfd.readouterr().out
    assert status == 1 and _totals(out)["counts differ"] == 2 and _totals(out)["other layout"] == 1
    assert f"{ids[4]}: {flow / ids[4]}: the folder holds 11 fields flow_x_00000.jpg" in out
    assert f"{ids[2]}: {flow / ids[2]}: the list says 20 frames; meta.json says 12 frames, 11 fields" in out
    assert (f"{ids[3]}: {flow / ids[3]}: the list says 5 frames; the folder holds 11 fields "
            "(expected 4, or 5 for a list of fields)") in out


@pytest.mark.parametrize(("kind", "row", "message"), [
    ("rawframes", "imgs 2 5 0", (r"rows\.txt:2: 3 numbers after the name in 'imgs 2 5 0': mmaction2's offset form "
                                r"'<frame_dir> <offset> <total_frames> <label>' \(offset 2: .*not supported\) or "
                                r"multi-label")),
    ("rawframes", "imgs 5 0 1 3", r"rows\.txt:2: 4 numbers .*multi-label '<frame_dir> <total_frames> <label1>"),
    ("video", "a.mp4 0 1", r"rows\.txt:2: 2 numbers .*multi-label.* or a rawframes row .*--list-kind rawframes"),
])
def test_mmaction2_list_rows_of_other_formats_are_refused_naming_the_line(tmp_path, capfd, kind, row, message):
    listed = tmp_path / "rows.txt"
    listed.write_text(("clip 5 0\n" if kind == "rawframes" else "clip.mp4 0\n") + row + "\n")
    with pytest.raises(AnnotationError, match=message):
        read_list_file(listed, kind)
    source = ListFiles(str(listed), test_list=str(listed), list_kind=kind)
    assert check_source(source, tmp_path, tmp_path, cache_dir=tmp_path / "cache") == 2
    assert "rows.txt:2: " in capfd.readouterr().err


def test_mmaction2_offset_rows_with_offset_0_are_read(tmp_path):
    listed = tmp_path / "rows.txt"
    listed.write_text("a/clip 0 120 1\nb/clip 75 0\nc/clip with space 0 30 1\n")
    records = read_list_file(listed, "rawframes").records
    assert [(r.video_id, r.num_frames, r.label) for r in records] == [
        ("a/clip", 120, 1), ("b/clip", 75, 0), ("c/clip with space", 30, 1)]


# --- check --decode: a video whose packets are damaged mid-file (issue 17). ---


def _encode(path: Path, frames: int = 50) -> Path:
    """A real H.264 MP4 (64x48, a keyframe every 10 frames, moov first) from FFmpeg."""
    subprocess.run(["ffmpeg", "-loglevel", "error", "-y", "-f", "lavfi", "-i", "testsrc=size=64x48:rate=25",
                    "-frames:v", str(frames), "-c:v", "libx264", "-g", "10", "-pix_fmt", "yuv420p",
                    "-movflags", "+faststart", str(path)], check=True, timeout=60)
    return path


def _damage_from_packet(path: Path, first: int) -> None:
    """Overwrite the payload of every packet from ``first`` on with noise, in place: the
    container (its index, its frame count) stays whole, the frames after the damage do not
    decode (a download with a bad stretch)."""
    with av.open(str(path)) as container:
        packets = [(packet.pos, packet.size) for packet in container.demux(video=0) if packet.size]
    data = bytearray(path.read_bytes())
    noise = np.random.default_rng(0)
    for pos, size in packets[first:]:
        data[pos + 4:pos + size] = noise.integers(0, 256, size - 4, dtype=np.uint8).tobytes()  # after the NAL length
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("decoder", ["decord", "torchcodec"])
def test_decode_names_a_video_that_stops_decoding_mid_file(tmp_path, capfd, decoder):
    """The index reads the container's count (50 frames) and trusts it; only --decode finds
    that frames 20-49 do not decode, and names the video and where decoding stops."""
    if decoder == "torchcodec":
        pytest.importorskip("torchcodec")
    videos = tmp_path / "videos"
    videos.mkdir()
    _encode(videos / "whole.mp4")
    _damage_from_packet(_encode(videos / "damaged.mp4"), first=20)  # a keyframe: frames 0-19 decode
    listed = tmp_path / "list.txt"
    listed.write_text("whole.mp4 0\ndamaged.mp4 1\n")
    flags = ["check", "--annotations", "ListFiles", "--annotations.train_list", str(listed),
             "--annotations.test_list", str(listed), "--video-root", str(videos), "--cache-dir", str(tmp_path / "c")]
    assert main(flags) == 0  # without --decode both look usable
    assert _totals(capfd.readouterr().out)["usable"] == 2
    assert main([*flags, "--decode", "--decoder", decoder]) == 1
    out = capfd.readouterr().out
    assert _rows(out)["train"][1] == "1" and _rows(out)["train"][-1] == "1"  # usable, undecodable
    line = next(line for line in out.splitlines() if line.startswith("  damaged: "))
    stop = re.search(r": frame (\d+) of 50 does not decode: ", line)
    assert stop and str(videos / "damaged.mp4") in line, line
    # Decoders read ahead: a frame before the damage may already fail. torchcodec stops within
    # its B-frame delay (frame 18); decord's decoding thread reads up to ~20 packets ahead, so
    # for a video this small even frame 0 fails (it would in training too).
    assert int(stop.group(1)) <= 20 and (decoder == "decord" or int(stop.group(1)) >= 10)
    assert "whole" not in out.split("problem lists")[0].split("undecodable")[-1]


def test_decode_with_a_decoder_that_cannot_run_is_one_line(tmp_path, capsys):
    listed = tmp_path / "list.txt"
    listed.write_text("a.mp4 0\n")
    source = ListFiles(str(listed), test_list=str(listed))
    assert check_source(source, tmp_path, cache_dir=tmp_path / "c", decoder="nonsense") == 2
    assert capsys.readouterr().err.startswith("error: --decode: decoder 'nonsense': unknown frame reader")
