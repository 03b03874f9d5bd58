import numpy as np
import pytest

from flow.codec import encode_flow, encode_jpeg, quantize
from flow.layout import DENSEFLOW, MMACTION2, FrameLayout
from flow.meta import FlowMeta, write_meta
from flow.store import FolderFlowStore

H, W, N = 24, 32, 4
VIDEO = "Class/v_Class_g01_c01"


def _fields() -> list[np.ndarray]:
    """Constant fields with a distinct value per field and component, so order is checkable."""
    return [np.stack([np.full((H, W), k - 1.5), np.full((H, W), -(k + 1.0))], -1) for k in range(N)]


def _write(folder, layout: FrameLayout, bound: float, with_meta: bool, with_rgb: bool = True) -> None:
    folder.mkdir(parents=True)
    for k, field in enumerate(_fields()):
        for path, data in zip(layout.flow_paths(folder, k), encode_flow(field, bound)):
            path.write_bytes(data)
    frames = N + 1 if with_rgb else 0
    for k in range(frames):
        layout.rgb_path(folder, k).write_bytes(encode_jpeg(np.full((H, W, 3), (40 * k, 0, 200), np.uint8)))
    if with_meta:
        meta = FlowMeta(
            algorithm="dis", params={}, bound=bound, jpeg_quality=95, width=W, height=H, num_frames=N + 1,
            num_flows=N, fps=25.0, source="x.avi", start_index=layout.start_index, rgb=with_rgb,
            layout=layout.templates(),
        )  # fmt: skip
        write_meta(folder, meta)


def test_reads_stacks_in_the_requested_order(tmp_path):
    bound = 10.0
    _write(tmp_path / VIDEO, DENSEFLOW, bound, with_meta=True)
    store = FolderFlowStore(tmp_path)  # meta.json says 0-based and bound 10
    assert store.is_complete(VIDEO) and store.num_flows(VIDEO) == N and store.num_rgb(VIDEO) == N + 1
    assert store.bound(VIDEO) == bound

    stack = store.read_flow(VIDEO, [2, 0, 2])
    assert stack.shape == (3, 2, H, W) and stack.dtype == np.uint8
    expected = quantize(np.array([_fields()[k][0, 0] for k in [2, 0, 2]]), bound)  # (3, 2)
    assert np.abs(stack.mean(axis=(2, 3)) - expected).max() <= 1

    rgb = store.read_rgb(VIDEO, [3, 1])
    assert rgb.shape == (2, H, W, 3) and rgb.dtype == np.uint8
    assert np.abs(rgb[:, 0, 0].astype(int) - [[120, 0, 200], [40, 0, 200]]).max() <= 3


def test_reads_a_folder_without_meta(tmp_path):
    _write(tmp_path / VIDEO, MMACTION2, 20.0, with_meta=False)
    store = FolderFlowStore(tmp_path, layout=MMACTION2)
    assert (tmp_path / VIDEO / "x_00001.jpg").exists()
    assert not store.is_complete(VIDEO) and store.meta(VIDEO) is None
    assert store.num_flows(VIDEO) == N and store.num_rgb(VIDEO) == N + 1
    stack = store.read_flow(VIDEO, [N - 1])
    assert np.abs(stack[0].mean(axis=(1, 2)) - quantize(_fields()[N - 1][0, 0])).max() <= 1
    with pytest.raises(FileNotFoundError, match="x_00005.jpg"):
        store.read_flow(VIDEO, [N])


def test_errors_name_the_file_or_video(tmp_path):
    _write(tmp_path / VIDEO, FrameLayout(), 20.0, with_meta=True, with_rgb=False)
    store = FolderFlowStore(tmp_path)
    (tmp_path / VIDEO / "flow_y_00002.jpg").write_bytes(b"garbage")
    with pytest.raises(ValueError, match="flow_y_00002.jpg"):
        store.read_flow(VIDEO, [1])
    with pytest.raises(IndexError, match=VIDEO):
        store.read_flow(VIDEO, [N])
    with pytest.raises(ValueError, match="backward"):
        store.read_flow(VIDEO, [0], backward=True)
    with pytest.raises(ValueError, match="RGB"):
        store.read_rgb(VIDEO, [0])
    with pytest.raises(FileNotFoundError, match="missing"):
        store.num_flows("Class/missing")
    with pytest.raises(ValueError, match="entry"):
        store.read_flow("../outside", [0])


def test_read_fields_gives_torch_uint8_and_the_bound_in_one_call(tmp_path):
    import torch

    _write(tmp_path / VIDEO, DENSEFLOW, 10.0, with_meta=True)
    fields = FolderFlowStore(tmp_path).read_fields(VIDEO, [3, 1, 3, 3])
    assert fields.bound == 10.0 and fields.planes.dtype == torch.uint8 and fields.planes.shape == (4, 2, H, W)
    assert torch.equal(fields.planes[0], fields.planes[2]) and torch.equal(fields.planes[0], fields.planes[3])
    np.testing.assert_array_equal(fields.planes.numpy(), FolderFlowStore(tmp_path).read_flow(VIDEO, [3, 1, 3, 3]))


def test_a_folder_read_through_the_mixed_store_looks_for_its_pack_once_per_read(tmp_path, monkeypatch):
    """open_flow_store reads packs or folders; a folder video must not cost a stat per image."""
    from pathlib import Path

    from flow.packed import open_flow_store

    _write(tmp_path / VIDEO, DENSEFLOW, 10.0, with_meta=True)
    store = open_flow_store(tmp_path)
    store.read_fields(VIDEO, [0])  # meta.json read and cached
    looked = []
    is_file = Path.is_file
    monkeypatch.setattr(Path, "is_file", lambda self: looked.append(self) or is_file(self))
    store.read_fields(VIDEO, list(range(N)))
    assert len(looked) <= 1, looked


def test_the_meta_cache_keeps_the_recent_videos_only(tmp_path, monkeypatch):
    """A worker reading a 300k-video dataset must not keep every meta.json it ever read."""
    import flow.store

    monkeypatch.setattr(flow.store, "CACHED_METAS", 2)
    for name in ("a", "b", "c"):
        _write(tmp_path / name, DENSEFLOW, 10.0, with_meta=True, with_rgb=False)
    store = FolderFlowStore(tmp_path)
    for name in ("a", "b", "a", "c"):
        assert store.meta(name).num_flows == N
    assert list(store._metas) == ["a", "c"]  # b was the least recently read
