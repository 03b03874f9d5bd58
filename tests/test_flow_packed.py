"""The packed store (one uncompressed zip per video), folder <-> pack conversion, and extraction into packs."""

import dataclasses
import errno
import zipfile
from pathlib import Path

import numpy as np
import pytest
from test_flow_extract import write_moving_video

import flow.extract
import flow.outputs
import flow.packed
from datamodules.annotations import read_list_file
from datamodules.index import build_index
from datamodules.synthetic import generate
from flow.__main__ import main
from flow.codec import encode_flow
from flow.extract import ExtractionConfig, FatalError, extract_many
from flow.layout import DENSEFLOW
from flow.pack_convert import convert_many, find_folders, pack_video, unpack_video
from flow.packed import (
    PackedFlowStore,
    PackWriter,
    open_flow_store,
    pack_path,
    write_pack,
)
from flow.store import FolderFlowStore

CONFIG = ExtractionConfig(algorithm="dis", short_side=0, backward=True, rgb=True)


@pytest.fixture(scope="module")
def videos(tmp_path_factory) -> tuple[Path, list[str]]:
    """Two tiny synthetic videos: their root and paths."""
    data = generate(tmp_path_factory.mktemp("videos"), "ucf101", num_classes=2, videos_per_class=3, num_frames=6,
                    size=(48, 32))
    return data.video_root, [str(path.relative_to(data.video_root)) for path in data.videos[:2]]


@pytest.fixture(scope="module")
def folders(videos, tmp_path_factory) -> tuple[Path, list[str]]:
    """Real DIS flow, forward and backward, and RGB frames of the two videos."""
    root = tmp_path_factory.mktemp("packed")
    assert extract_many(*videos, root / "flow", CONFIG, progress=False).failed == 0
    return root / "flow", find_folders(root / "flow")


def _files(root: Path) -> dict[str, bytes]:
    return {path.relative_to(root).as_posix(): path.read_bytes() for path in root.rglob("*") if path.is_file()}


def test_folder_to_pack_to_folder_is_byte_identical(folders, tmp_path):
    flow_root, ids = folders
    assert len(ids) == 2
    summary = convert_many("pack", flow_root, tmp_path / "packed", report=pytest.fail)
    assert (summary.converted, summary.skipped, summary.failed) == (2, 0, 0)
    for video_id in ids:  # a standard zip: members under the folder's names, meta.json last
        with zipfile.ZipFile(pack_path(tmp_path / "packed", video_id)) as archive:
            names = archive.namelist()
            assert names[-1] == "meta.json" and archive.testzip() is None
            assert all(info.compress_type == zipfile.ZIP_STORED for info in archive.infolist())
    summary = convert_many("unpack", tmp_path / "packed", tmp_path / "back", report=pytest.fail)
    assert summary.converted == 2
    assert _files(tmp_path / "back") == _files(flow_root)
    # Resumable: a second run of either direction finds everything complete.
    assert convert_many("pack", flow_root, tmp_path / "packed").skipped == 2
    assert convert_many("unpack", tmp_path / "packed", tmp_path / "back").skipped == 2


def test_conversion_runs_on_worker_processes(folders, tmp_path):
    flow_root, _ = folders
    assert convert_many("pack", flow_root, tmp_path / "packed", workers=2, report=pytest.fail).converted == 2
    assert convert_many("unpack", tmp_path / "packed", tmp_path / "back", workers=2, report=pytest.fail).converted == 2
    assert _files(tmp_path / "back") == _files(flow_root)


def test_reader_returns_what_the_folder_store_returns(folders, tmp_path):
    flow_root, ids = folders
    convert_many("pack", flow_root, tmp_path, report=pytest.fail)
    folder_store, packed = FolderFlowStore(flow_root), PackedFlowStore(tmp_path)
    for video_id in ids:
        assert packed.meta(video_id) == folder_store.meta(video_id)
        assert packed.num_flows(video_id) == folder_store.num_flows(video_id) > 0
        assert packed.num_rgb(video_id) == folder_store.num_rgb(video_id) > 0
        indices = [2, 0, 2, packed.num_flows(video_id) - 1]
        for backward in (False, True):
            expected = folder_store.read_flow(video_id, indices, backward=backward)
            np.testing.assert_array_equal(packed.read_flow(video_id, indices, backward=backward), expected)
        np.testing.assert_array_equal(packed.read_rgb(video_id, [1, 0]), folder_store.read_rgb(video_id, [1, 0]))
        with pytest.raises(IndexError, match="out of range"):
            packed.read_flow(video_id, [packed.num_flows(video_id)])


def test_pack_of_a_folder_without_meta_json_uses_the_given_layout(tmp_path):
    folder = tmp_path / "denseflow" / "v"
    folder.mkdir(parents=True)
    for k in range(3):
        for path, data in zip(DENSEFLOW.flow_paths(folder, k), encode_flow(np.full((8, 8, 2), float(k)), 20.0)):
            path.write_bytes(data)
    (folder / "notes.txt").write_text("not a frame")  # files of no layout stay behind
    assert pack_video(folder, tmp_path / "p" / "v.zip", layout=DENSEFLOW)
    store = PackedFlowStore(tmp_path / "p", layout=DENSEFLOW, bound=20.0)
    assert store.meta("v") is None and store.num_flows("v") == 3
    expected = FolderFlowStore(folder.parent, DENSEFLOW, 20.0).read_flow("v", [1])
    np.testing.assert_array_equal(store.read_flow("v", [1]), expected)
    assert "notes.txt" not in zipfile.ZipFile(tmp_path / "p" / "v.zip").namelist()


def test_a_crash_mid_write_leaves_no_pack_the_reader_trusts(tmp_path):
    def members():
        yield "flow_x_00001.jpg", b"\xff\xd8"
        raise KeyboardInterrupt  # the process stops while the zip is half-written

    with pytest.raises(KeyboardInterrupt):
        write_pack(tmp_path / "v.zip", members(), b"{}")
    assert list(tmp_path.iterdir()) == []
    # A .tmp left by a killed process (no chance to clean up) is no pack either.
    (tmp_path / "v.zip.tmp").write_bytes(b"PK\x03\x04 half")
    store = PackedFlowStore(tmp_path)
    assert store.meta("v") is None and not store.exists("v")
    with pytest.raises(FileNotFoundError, match="no pack for video 'v'"):
        store.read_flow("v", [0])


@pytest.mark.parametrize("video_id", ["../outside", "/abs/v", "a/../../b"])
def test_video_ids_leaving_the_root_are_refused(tmp_path, video_id):
    with pytest.raises(ValueError, match="must"):
        PackedFlowStore(tmp_path / "root").read_flow(video_id, [0])


def test_member_names_leaving_the_folder_are_refused(tmp_path):
    with pytest.raises(ValueError, match="not a plain file name"):
        write_pack(tmp_path / "v.zip", [("../evil.jpg", b"x")], None)
    with zipfile.ZipFile(tmp_path / "bad.zip", "w") as archive:  # a pack made by another tool
        archive.writestr("../evil.jpg", b"x")
    with pytest.raises(ValueError, match="not a plain file name"):
        unpack_video(tmp_path / "bad.zip", tmp_path / "out" / "bad")
    assert not (tmp_path / "out" / "evil.jpg").exists()


def test_a_damaged_pack_is_an_error_naming_the_file(folders, tmp_path):
    flow_root, ids = folders
    video_id = ids[0]
    convert_many("pack", flow_root, tmp_path, report=pytest.fail)
    path = pack_path(tmp_path, video_id)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])  # truncated: no central directory
    with pytest.raises(ValueError, match=f"{path}: not a readable zip"):
        PackedFlowStore(tmp_path).read_flow(video_id, [0])
    # A flipped byte inside a JPEG member: its CRC says so, no wrong image comes back.
    with zipfile.ZipFile(pack_path(tmp_path, ids[1])) as archive:
        info = archive.getinfo("flow_x_00002.jpg")
    path = pack_path(tmp_path, ids[1])
    damaged = bytearray(path.read_bytes())
    damaged[info.header_offset + 30 + len(info.filename) + 100] ^= 0xFF
    path.write_bytes(bytes(damaged))
    store = PackedFlowStore(tmp_path)
    store.read_flow(ids[1], [0])  # other members still read
    with pytest.raises(ValueError, match=f"{path}: member 'flow_x_00002.jpg' fails its CRC check"):
        store.read_flow(ids[1], [1])


def test_a_compressed_member_is_refused(tmp_path):
    with zipfile.ZipFile(tmp_path / "v.zip", "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("flow_x_00001.jpg", b"x" * 100)
    with pytest.raises(ValueError, match="is compressed"):
        PackedFlowStore(tmp_path).num_flows("v")


def test_command_line_packs_and_unpacks(folders, tmp_path, capsys):
    flow_root, _ = folders
    assert main(["pack", str(flow_root), str(tmp_path / "packed"), "--workers", "2"]) == 0
    assert "2 converted" in capsys.readouterr().out
    assert main(["unpack", str(tmp_path / "packed"), str(tmp_path / "back")]) == 0
    assert _files(tmp_path / "back") == _files(flow_root)
    bad = tmp_path / "packed" / "Broken" / "v.zip"
    bad.parent.mkdir()
    bad.write_bytes(b"not a zip")
    assert main(["unpack", str(tmp_path / "packed"), str(tmp_path / "back")]) == 1
    captured = capsys.readouterr()
    assert "2 already complete, 1 failed" in captured.out and f"{bad}: not a readable zip" in captured.err


def test_open_flow_store_prefers_a_pack_else_the_folder(folders, tmp_path):
    flow_root, (packed_id, folder_id) = folders
    mixed = tmp_path / "mixed"
    convert_many("unpack", _packed(flow_root, tmp_path / "packs"), mixed, report=pytest.fail)
    pack_video(flow_root / packed_id, pack_path(mixed, packed_id))  # both: the pack wins
    (pack_path(mixed, folder_id).with_suffix(".zip.tmp")).write_bytes(b"PK half-written")  # not a pack
    store, folder_store = open_flow_store(mixed), FolderFlowStore(flow_root)
    assert store.folder(packed_id) == pack_path(mixed, packed_id) and store.is_packed(packed_id)
    assert store.folder(folder_id) == mixed / folder_id and not store.is_packed(folder_id)
    for video_id in (packed_id, folder_id):
        assert store.exists(video_id) and store.meta(video_id) == folder_store.meta(video_id)
        np.testing.assert_array_equal(store.read_flow(video_id, [1, 0]), folder_store.read_flow(video_id, [1, 0]))
        np.testing.assert_array_equal(store.read_rgb(video_id, [2]), folder_store.read_rgb(video_id, [2]))
    assert not store.exists("Missing/v") and store.meta("Missing/v") is None
    assert store.stamp_paths(folder_id) == [pack_path(mixed, folder_id), mixed / folder_id]
    assert PackedFlowStore(mixed).stamp_paths(folder_id) == [pack_path(mixed, folder_id)]


def _packed(flow_root: Path, packs: Path) -> Path:
    convert_many("pack", flow_root, packs, report=pytest.fail)
    return packs


def _members(pack: Path) -> dict[str, bytes]:
    with zipfile.ZipFile(pack) as archive:
        assert archive.namelist()[-1] == "meta.json" and archive.testzip() is None
        return {name: archive.read(name) for name in archive.namelist()}


def _no_file_per_field(monkeypatch) -> None:
    """Every folder write fails: a packed extraction must not write one file per field."""
    def write_file(path, data):
        raise AssertionError(f"a file per field was written: {path}")

    monkeypatch.setattr(flow.outputs, "write_file", write_file)


def _listing(root: Path) -> list[str]:
    return sorted(path.relative_to(root).as_posix() for path in root.rglob("*")
                  if not path.name.startswith("failures"))


@pytest.mark.parametrize("workers", [1, 2])
def test_extract_writes_packs_directly(videos, folders, tmp_path, monkeypatch, workers):
    flow_root, ids = folders
    packed = tmp_path / "packed"
    _no_file_per_field(monkeypatch)
    config = dataclasses.replace(CONFIG, store="packed")
    summary = extract_many(*videos, packed, config, workers=workers, progress=False)
    assert (summary.done, summary.failed) == (2, 0)
    # Only the packs (and their class folders): no video folder, no .tmp.
    assert _listing(packed) == sorted({i.split("/")[0] for i in ids} | {f"{i}.zip" for i in ids})
    for video_id in ids:  # the folder extraction packed == the direct pack, member by member
        pack_video(flow_root / video_id, pack_path(tmp_path / "from_folders", video_id))
        assert _members(pack_path(packed, video_id)) == _members(pack_path(tmp_path / "from_folders", video_id))
    assert summary.bytes_written == sum(len(data) for i in ids for name, data in _members(pack_path(packed, i)).items()
                                        if name.endswith(".jpg"))  # fmt: skip
    assert extract_many(*videos, packed, config, progress=False).skipped == 2


def _difference_flow(monkeypatch):
    from test_flow_batched import DifferenceFlow

    from flow.algorithms import ALGORITHMS

    monkeypatch.setitem(ALGORITHMS, DifferenceFlow.name, DifferenceFlow)
    return ExtractionConfig(algorithm=DifferenceFlow.name, short_side=0, backward=True, rgb=True, batch=3, threads=2)


def test_batched_extract_writes_packs_directly(videos, tmp_path, monkeypatch):
    batched = _difference_flow(monkeypatch)
    assert extract_many(*videos, tmp_path / "folders", batched, progress=False).done == 2
    _no_file_per_field(monkeypatch)
    summary = extract_many(*videos, tmp_path / "packed", dataclasses.replace(batched, store="packed"), progress=False)
    assert (summary.done, summary.failed) == (2, 0)
    ids = find_folders(tmp_path / "folders")
    for video_id in ids:
        pack_video(tmp_path / "folders" / video_id, pack_path(tmp_path / "from_folders", video_id))
        assert _members(pack_path(tmp_path / "packed", video_id)) == _members(
            pack_path(tmp_path / "from_folders", video_id))
        assert not (tmp_path / "packed" / video_id).exists()
    assert not list((tmp_path / "packed").rglob("*.tmp"))


def _still_video(video_root: Path) -> str:
    """A one-frame video: it fails (no flow field) wherever it is extracted."""
    still = video_root / "Still" / "still.avi"
    if not still.exists():
        write_moving_video(still, frames=1)
    return "Still/still.avi"


@pytest.mark.parametrize("batch", [0, 3])
def test_packed_resume_redoes_a_crashed_tmp_and_a_failure_leaves_none(videos, tmp_path, monkeypatch, batch):
    video_root, paths = videos
    config = _difference_flow(monkeypatch) if batch else CONFIG
    config = dataclasses.replace(config, store="packed")
    packed = tmp_path / "packed"
    listed = [*paths, _still_video(video_root)]
    for video_id in [*find_folders_of(paths), "Still/still"]:  # what a killed run leaves
        tmp = pack_path(packed, video_id).with_name(pack_path(packed, video_id).name + ".tmp")
        tmp.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_bytes(b"PK\x03\x04 half-written")
    summary = extract_many(video_root, listed, packed, config, progress=False)
    assert (summary.done, summary.failed) == (2, 1)
    assert "1 frame(s)" in summary.failures[0].reason and summary.failures[0].video == "Still/still.avi"
    assert not list(packed.rglob("*.tmp")) and not pack_path(packed, "Still/still").exists()
    for video_id in find_folders_of(paths):
        assert PackedFlowStore(packed).num_flows(video_id) == 5
    summary = extract_many(video_root, listed, packed, config, progress=False)
    assert (summary.skipped, summary.failed) == (2, 1)


def find_folders_of(paths: list[str]) -> list[str]:
    return [str(Path(path).with_suffix("")) for path in paths]


@pytest.mark.parametrize("batch", [0, 3])
def test_a_write_error_fails_its_video_alone_and_a_full_disk_stops_the_run(videos, tmp_path, monkeypatch, batch):
    video_root, paths = videos
    config = dataclasses.replace(_difference_flow(monkeypatch) if batch else CONFIG, store="packed")
    broken = find_folders_of(paths)[0]
    real_add = flow.packed.PackWriter.add

    def add(writer, name, data):
        if writer.path == pack_path(tmp_path / "packed", broken) and name == "flow_x_00002.jpg":
            raise OSError(errno.EIO, "Input/output error", str(writer.tmp))
        return real_add(writer, name, data)

    monkeypatch.setattr(flow.packed.PackWriter, "add", add)
    summary = extract_many(video_root, paths, tmp_path / "packed", config, progress=False)
    assert (summary.done, summary.failed) == (1, 1)
    assert summary.failures[0].video == paths[0] and "Input/output error" in summary.failures[0].reason
    assert _listing(tmp_path / "packed") == sorted({p.split("/")[0] for p in paths} | {
        f"{i}.zip" for i in find_folders_of(paths)[1:]})

    def full_disk(writer, name, data):
        raise OSError(errno.ENOSPC, "No space left on device", str(writer.tmp))

    monkeypatch.setattr(flow.packed.PackWriter, "add", full_disk)
    with pytest.raises(FatalError, match="No space left on device"):
        extract_many(video_root, paths, tmp_path / "full", config, progress=False)
    assert not [path for path in (tmp_path / "full").rglob("*") if path.is_file()]  # no pack, no .tmp


def test_a_pack_writer_refuses_a_member_twice_and_meta_json_before_the_end(tmp_path):
    with pytest.raises(ValueError, match="written twice"), PackWriter(tmp_path / "v.zip") as writer:
        writer.add("flow_x_00001.jpg", b"1")
        writer.add("flow_x_00001.jpg", b"2")
    with pytest.raises(ValueError, match="meta.json is written last"):
        write_pack(tmp_path / "v.zip", [("meta.json", b"{}")], None)
    assert list(tmp_path.iterdir()) == []


def test_the_datamodules_index_reads_packs_and_notices_new_ones(videos, folders, tmp_path):
    video_root, paths = videos
    flow_root, ids = folders
    listed = tmp_path / "list.txt"
    listed.write_text("".join(f"{path} {label}\n" for label, path in enumerate(paths)))
    frames = tmp_path / "frames"
    pack_video(flow_root / ids[0], pack_path(frames, ids[0]))  # the other video: no flow yet

    def index():
        return build_index(read_list_file(listed), video_root, frames, needs_flow=True, cache_dir=tmp_path / "cache")

    with pytest.warns(UserWarning, match="1 of 2 videos dropped"):
        first = index()
    assert first.video_ids == [ids[0]] and first.incomplete_flow == [ids[1]]
    assert first.num_flows == [FolderFlowStore(flow_root).num_flows(ids[0])]
    pack_video(flow_root / ids[1], pack_path(frames, ids[1]))  # the cache notices the new pack
    second = index()
    assert not second.from_cache and second.video_ids == ids and second.incomplete_flow == []


def test_the_central_directory_is_read_as_zipfile_reads_it(tmp_path):
    """Our two-pread parser (a new store per sample costs a parse) gives zipfile's members,
    also for non-ASCII names, member comments, extra fields and an archive comment."""
    from flow.packed import _central_directory, _zipfile_directory

    pack = tmp_path / "v.zip"
    with zipfile.ZipFile(pack, "w", zipfile.ZIP_STORED) as archive:
        archive.comment = b"made elsewhere"
        for k, name in enumerate(["flow_x_00000.jpg", "caf\u00e9.jpg", "meta.json"]):
            info = zipfile.ZipInfo(name)
            info.comment, info.extra = b"c" * k, b"\xfe\xca\x02\x00ab" if k else b""
            archive.writestr(info, bytes(range(k + 3)) * 100)
    with open(pack, "rb") as file:
        assert _central_directory(pack, file.fileno()) == _zipfile_directory(pack)
    data = bytearray(pack.read_bytes())
    cut = data.rindex(b"PK\x01\x02")
    data[cut:cut + 4] = b"XXXX"  # the last member's central entry damaged
    pack.write_bytes(bytes(data))
    with pytest.raises(ValueError, match=f"{pack}: not a readable zip"):
        PackedFlowStore(tmp_path)._index("v")


def test_a_store_with_open_packs_pickles_into_spawned_workers(tmp_path):
    """Packs stay open while their index lives; a pickled store (spawned workers) opens its own."""
    import pickle

    folder = tmp_path / "folders" / "v"
    folder.mkdir(parents=True)
    for k in range(2):
        for path, data in zip(DENSEFLOW.flow_paths(folder, k), encode_flow(np.ones((8, 8, 2), np.float32), 20.0)):
            path.write_bytes(data)
    pack_video(str(folder), str(tmp_path / "packs" / "v.zip"), layout=DENSEFLOW)
    store = PackedFlowStore(tmp_path / "packs", DENSEFLOW, 20.0)
    first = store.read_flow("v", [1])
    copy = pickle.loads(pickle.dumps(store))
    np.testing.assert_array_equal(copy.read_flow("v", [1]), first)
