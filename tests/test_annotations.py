from pathlib import Path

import pytest

from datamodules.annotations import (
    HMDB51,
    UCF101,
    AnnotationError,
    Kinetics,
    ListFiles,
    kinetics_splits,
    read_class_index,
    read_hmdb51,
    read_kinetics,
    read_list_file,
    read_ucf101,
)
from tests.conftest import REAL_ANNOTATIONS

REAL = REAL_ANNOTATIONS


@pytest.mark.parametrize("split, train, test", [(1, 9537, 3783), (2, 9586, 3734), (3, 9624, 3696)])
def test_ucf101_real_counts(split, train, test):
    train_set = read_ucf101(REAL / "ucf101", split, "train")
    test_set = read_ucf101(REAL / "ucf101", split, "test")
    assert (len(train_set.records), len(test_set.records)) == (train, test)
    assert len(train_set.classes) == 101 and train_set.classes == test_set.classes
    labels = {r.label for r in train_set.records + test_set.records}
    assert labels == set(range(101))  # 0-based
    assert not any("\r" in r.path or r.path != r.path.strip() for r in test_set.records)  # CRLF gone


def test_ucf101_real_record_and_handstand_pushups():
    train = read_ucf101(REAL / "ucf101", 1, "train")
    first = train.records[0]
    assert first.video_id == "ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01"
    assert first.path == "ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi"
    assert first.label == 0 and first.num_frames is None
    test = read_ucf101(REAL / "ucf101", 1, "test")
    label = test.classes.index("HandstandPushups")
    assert label == 36
    handstand = [r for r in test.records if "_HandStandPushups_" in r.path]
    assert handstand and all(r.label == label for r in handstand)
    assert all(r.path.startswith("HandstandPushups/") for r in handstand)


def _write(path: Path, lines: list[str], end: str = "\n") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes("".join(line + end for line in lines).encode())
    return path


def test_ucf101_test_label_falls_back_to_case_insensitive_folder(tmp_path):
    _write(tmp_path / "classInd.txt", ["1 ApplyEyeMakeup", "2 HandstandPushups"], "\r\n")
    _write(tmp_path / "testlist01.txt", ["HandStandPushups/v_HandStandPushups_g01_c01.avi",
                                         "ApplyEyeMakeup/v_ApplyEyeMakeup_g01_c01.avi"], "\r\n")
    records = read_ucf101(tmp_path, 1, "test").records
    assert [r.label for r in records] == [1, 0]


def test_ucf101_errors_name_file_and_line(tmp_path):
    _write(tmp_path / "classInd.txt", ["1 A", "2 B"], "\r\n")
    _write(tmp_path / "trainlist01.txt", ["A/v_A_g01_c01.avi 1", "B/v_B_g01_c01.avi x"], "\r\n")
    with pytest.raises(AnnotationError, match=r"trainlist01\.txt:2: label 'x'"):
        read_ucf101(tmp_path, 1, "train")
    _write(tmp_path / "trainlist01.txt", ["A/v_A_g01_c01.avi 2"])
    with pytest.raises(AnnotationError, match=r"trainlist01\.txt:1: .*disagrees with the folder"):
        read_ucf101(tmp_path, 1, "train")
    _write(tmp_path / "testlist01.txt", ["C/v_C_g01_c01.avi"])
    with pytest.raises(AnnotationError, match=r"testlist01\.txt:1: .*no class"):
        read_ucf101(tmp_path, 1, "test")
    _write(tmp_path / "classInd.txt", ["1 A", "3 B"])
    with pytest.raises(AnnotationError, match=r"classInd\.txt: class indices must run 1\.\.2"):
        read_class_index(tmp_path / "classInd.txt")


@pytest.mark.parametrize("split", [1, 2, 3])
def test_hmdb51_real_counts(split):
    train = read_hmdb51(REAL / "hmdb51", split, "train")
    test = read_hmdb51(REAL / "hmdb51", split, "test")
    assert (len(train.records), len(test.records)) == (3570, 1530)
    assert len(train.classes) == 51 and train.classes == sorted(train.classes)
    assert {r.label for r in train.records} == set(range(51))
    record = next(r for r in test.records if r.label == train.classes.index("dive"))
    assert record.path.startswith("dive/") and record.path.endswith(".avi")
    assert record.video_id == record.path[: -len(".avi")]


def test_hmdb51_trailing_space_flags_and_bad_line(tmp_path):
    _write(tmp_path / "wave_test_split1.txt", ["w1.avi 1 ", "w2.avi 2 ", "w3.avi 0 "])
    _write(tmp_path / "clap_test_split1.txt", ["c1.avi 2 "])
    _write(tmp_path / "clap_test_split2.txt", ["c1.avi 1 "])
    train, test = read_hmdb51(tmp_path, 1, "train"), read_hmdb51(tmp_path, 1, "test")
    assert train.classes == ["clap", "wave"]
    assert [(r.path, r.label) for r in train.records] == [("wave/w1.avi", 1)]
    assert [(r.video_id, r.label) for r in test.records] == [("clap/c1", 0), ("wave/w2", 1)]
    _write(tmp_path / "wave_test_split1.txt", ["w1.avi 1 ", "w2.avi 3 "])
    with pytest.raises(AnnotationError, match=r"wave_test_split1\.txt:2:"):
        read_hmdb51(tmp_path, 1, "train")
    with pytest.raises(AnnotationError, match="no '<class>_test_split3.txt'"):
        read_hmdb51(tmp_path, 3, "train")


def test_kinetics400_real_val():
    label_map = REAL / "kinetics400" / "label_map_400_i3d.txt"
    val = read_kinetics(REAL / "kinetics400" / "kinetics-400_val.csv", "val", label_map)
    assert len(val.records) == 19906 and len(val.classes) == 400
    assert val.classes == label_map.read_text().splitlines()
    assert {r.label for r in val.records} == set(range(400))
    # Without the map the order is the sorted labels, which the I3D map follows.
    assert read_kinetics(REAL / "kinetics400" / "kinetics-400_val.csv").classes == val.classes
    drumming = next(r for r in val.records if r.label == val.classes.index("air drumming"))  # a quoted label
    assert drumming.path.startswith("val/air drumming/") and drumming.path.endswith(".mp4")
    assert kinetics_splits(REAL / "kinetics400" / "kinetics-400_val.csv") == ["val"]


def test_kinetics_names_candidates_and_unlabelled_rows(tmp_path):
    csv_path = _write(tmp_path / "k.csv", [
        "label,youtube_id,time_start,time_end,split,is_cc",
        '"air drumming, loud",abc,4.0,14.0,train,0',
        "abseiling,def,30,40,val,0",
        ",ghi,1,11,test,0",
    ])
    everything = read_kinetics(csv_path)
    assert everything.classes == ["abseiling", "air drumming, loud"]
    first, second, third = everything.records
    assert first.candidates() == ("train/air drumming, loud/abc_000004_000014.mp4",
                                  "train/air_drumming,_loud/abc_000004_000014.mp4", "abc_000004_000014.mp4")
    assert first.video_id == "train/air drumming, loud/abc_000004_000014" and first.label == 1
    assert second.label == 0 and third.label == -1
    assert third.candidates() == ("test/ghi_000001_000011.mp4", "ghi_000001_000011.mp4")
    assert [r.path for r in read_kinetics(csv_path, "val", video_layout="flat").records] == ["def_000030_000040.mp4"]
    assert read_kinetics(csv_path, "val", video_layout="split_label").records[0].alternatives == ()


def test_kinetics_label_map_spelling_and_errors(tmp_path):
    csv_path = _write(tmp_path / "k.csv", ["label,youtube_id,time_start,time_end,split",
                                           "air drumming,abc,4,14,val", "juggling,x,1,2,val"])
    label_map = _write(tmp_path / "map.txt", ["Air_Drumming", "abseiling"])
    with pytest.raises(AnnotationError, match=r"k\.csv:3: label 'juggling' is not in the label map"):
        read_kinetics(csv_path, label_map=label_map)
    _write(label_map, ["abseiling", "Air_Drumming", "juggling"])
    assert [r.label for r in read_kinetics(csv_path, label_map=label_map).records] == [1, 2]
    _write(csv_path, ["youtube_id,time_start,time_end,split", "abc,4,14,test"])
    assert read_kinetics(csv_path, label_map=label_map).records[0].label == -1  # test CSVs have no label
    _write(csv_path, ["label,youtube_id,time_start,time_end,split", "a,abc,four,14,val"])
    with pytest.raises(AnnotationError, match=r"k\.csv:2: time_start 'four'"):
        read_kinetics(csv_path)
    _write(csv_path, ["label,youtube,start"])
    with pytest.raises(AnnotationError, match=r"k\.csv:1: header lacks"):
        read_kinetics(csv_path)


def test_list_files(tmp_path):
    videos = _write(tmp_path / "videos.txt", ["a/clip one.mp4 0", "b/clip2.mp4 2  "], "\r\n")
    annotations = read_list_file(videos)
    assert annotations.classes == ["0", "1", "2"]
    assert [(r.video_id, r.path, r.label) for r in annotations.records] == [
        ("a/clip one", "a/clip one.mp4", 0), ("b/clip2", "b/clip2.mp4", 2)]
    frames = _write(tmp_path / "frames.txt", ["a/clip1 120 1", "b/clip2/ 75 0"])
    records = read_list_file(frames, "rawframes", classes=["x", "y"]).records
    assert [(r.video_id, r.path, r.num_frames, r.label) for r in records] == [
        ("a/clip1", None, 120, 1), ("b/clip2", None, 75, 0)]
    with pytest.raises(AnnotationError, match=r"frames\.txt:1: label 1 outside 0\.\.0"):
        read_list_file(frames, "rawframes", classes=["x"])
    short = _write(tmp_path / "short.txt", ["a/clip1 120 0", "a.mp4 0"])
    with pytest.raises(AnnotationError, match=r"short\.txt:2: expected '<frame_dir> <num_frames> <label>'"):
        read_list_file(short, "rawframes")


def test_sources_offer_classes_splits_and_records_of_the_real_files():
    ucf = UCF101(str(REAL / "ucf101"), split=2)
    assert ucf.splits() == ("train", "test") and len(ucf.classes()) == 101
    assert ucf.records("test").records == read_ucf101(REAL / "ucf101", 2, "test").records
    assert (ucf.stage_split("train"), ucf.stage_split("val"), ucf.stage_split("test")) == ("train", "test", "test")
    hmdb = HMDB51(str(REAL / "hmdb51"))
    assert len(hmdb.classes()) == 51 and len(hmdb.records("train").records) == 3570
    with pytest.raises(KeyError, match="has splits train, test, not 'val'"):
        ucf.records("val")
    # The real folder holds the val CSV alone: it serves every stage, as one subset.
    val = str(REAL / "kinetics400" / "kinetics-400_val.csv")
    kinetics = Kinetics(val, val, label_map=str(REAL / "kinetics400" / "label_map_400_i3d.txt"))
    assert kinetics.splits() == ("train",) and kinetics.stage_split("test") == "train"
    assert len(kinetics.records("train").records) == 19906 and len(kinetics.classes()) == 400


def test_kinetics_and_list_sources_read_a_shared_file_once(tmp_path):
    header = "label,youtube_id,time_start,time_end,split"
    train = _write(tmp_path / "train.csv", [header, "b,yid0000001,0,10,train", "a,yid0000002,0,10,train"])
    val = _write(tmp_path / "val.csv", [header, "b,yid0000003,0,10,val"])
    source = Kinetics(str(train), str(val))
    assert source.splits() == ("train", "val") and source.stage_split("test") == "val"
    # Without a label map the val CSV's own classes ("b" alone) are relabelled by train's.
    assert source.classes() == ["a", "b"] and [r.label for r in source.records("val").records] == [1]
    listed = _write(tmp_path / "list.txt", ["a.mp4 0", "b.mp4 1"])
    lists = ListFiles(str(listed), test_list=str(listed))
    assert lists.splits() == ("train",) and lists.stage_split("val") == lists.stage_split("test") == "train"
