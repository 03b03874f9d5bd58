import pytest

from datamodules.annotations.records import strip_extension
from flow.videos import list_videos, video_id


def test_list_videos_walks_the_root_sorted_by_extension(tmp_path):
    for name in ["b/v2.mp4", "a/v1.AVI", "a/v0.avi", "a/notes.txt", "c/d/v3.mkv"]:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"x")
    assert list_videos(tmp_path) == ["a/v0.avi", "a/v1.AVI", "b/v2.mp4", "c/d/v3.mkv"]
    assert list_videos(tmp_path, extensions=["mp4"]) == ["b/v2.mp4"]


def test_list_file_takes_the_path_of_annotation_lines(tmp_path):
    listing = tmp_path / "list.txt"
    listing.write_bytes(b"B/v_B_g01.avi 2\r\nA/v_A_g01.avi 1\r\n\r\nA/with space.avi\r\nC/x.avi 1 \r\nD/y.mp4\tcannot open\r\n")
    assert list_videos(tmp_path, listing) == ["A/v_A_g01.avi", "A/with space.avi", "B/v_B_g01.avi", "C/x.avi", "D/y.mp4"]


def test_a_missing_root_or_list_is_refused_by_name(tmp_path):
    with pytest.raises(ValueError, match="video root .*nope is not a directory"):
        list_videos(tmp_path / "nope")
    with pytest.raises(ValueError, match="cannot read video list .*list.txt"):
        list_videos(tmp_path, tmp_path / "list.txt")


def test_video_id_is_the_relative_path_without_its_last_suffix():
    assert video_id("ApplyEyeMakeup/v_X.avi") == "ApplyEyeMakeup/v_X"
    assert video_id("a.b/c.mp4") == "a.b/c"
    assert video_id("clip.tar.gz") == "clip.tar"
    assert video_id("train/air drumming, loud/abc_000004_000014.mp4") == "train/air drumming, loud/abc_000004_000014"
    assert video_id("clap/c1") == "clap/c1"  # rawframe folders have no extension
    assert video_id("x/.hidden") == "x/.hidden"  # a dot file has no suffix


def test_annotations_and_extraction_name_videos_by_the_one_rule():
    # The flow folder extraction writes is the one the annotation readers look up.
    for listed in ["ApplyEyeMakeup/v_X.avi", "a.b/c.mp4", "clap/c1", "./v.webm", "a//b.mkv", "clap//c1"]:
        assert strip_extension(listed) == video_id(listed)
