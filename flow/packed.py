"""The packed store: one uncompressed zip per video, ``<root>/<video_id>.zip``.

Its members are the files of the video's folder under the same names (``meta.json``
last), stored (ZIP_STORED) so that ``unzip`` or Python's zipfile open it and unpacking
gives back byte-identical JPEGs. A pack is written as ``<video_id>.zip.tmp-<host>-<pid>``
and renamed when complete, so a pack under its final name is whole: a crash leaves only a
temporary file, which readers never open.

Reading: the zip's central directory is read once per video (about 1.5 ms for 300
members), then each member with one ``os.pread`` at its offset (5 us, where zipfile's
own per-member read costs 40 us and reopening the zip 1.2 ms); its CRC is checked, so a
damaged pack is an error naming the file, never a wrong image.
"""

from __future__ import annotations

import os
import struct
import threading
import zipfile
import zlib
from collections import OrderedDict
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from flow.codec import DEFAULT_BOUND
from flow.layout import FrameLayout
from flow.meta import META_FILE, FlowMeta, parse_meta
from flow.ownership import temporary
from flow.paths import safe_join
from flow.store import FolderFlowStore, decode_image

PACK_SUFFIX = ".zip"

_LOCAL_HEADER = struct.Struct("<IHHHHHIIIHH")  # a zip local file header, 30 bytes
_LOCAL_SIGNATURE = 0x04034B50

# Member indexes kept per store (per worker process): a Kinetics video has ~600 members.
_CACHED_VIDEOS = 256
_KNOWN_PACKS = 65536  # video ids known to be packed, per store


def pack_path(root: Path | str, video_id: str) -> Path:
    """Where video ``video_id``'s pack lies under ``root``; ids leaving ``root`` are refused."""
    return safe_join(root, video_id + PACK_SUFFIX)


def _check_member_name(name: str, pack: Path) -> None:
    # Members are a flat folder's files: a name with a separator or ".." could escape
    # the folder it is unpacked into.
    if not name or "/" in name or "\\" in name or name in (".", ".."):
        raise ValueError(f"{pack}: member name {name!r} is not a plain file name")


def tmp_path(pack: Path | str) -> Path:
    """Where this process writes ``pack`` until it is complete (readers never open it):
    ``<pack>.tmp-<host>-<pid>``, so two writers never share one."""
    return temporary(Path(pack))


class PackWriter:
    """A pack written member by member into ``tmp_path(pack)`` and renamed to ``pack`` by ``commit``.

    ``add`` may be called from several
    threads (the batched extraction's writers). ``durable``: the data and the rename are
    fsync'd, as a folder's meta.json is, so a pack under its final name survives a power
    cut whole. Used as a context manager, an exception before ``commit`` aborts (the
    ``.tmp`` is removed).
    """

    def __init__(self, pack: Path | str, durable: bool = False):
        self.path = Path(pack)
        self.tmp = tmp_path(self.path)
        self.durable = durable
        self._lock = threading.Lock()
        self._names: set[str] = set()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = open(self.tmp, "wb")  # noqa: SIM115 - closed by commit or abort
        try:
            self._archive = zipfile.ZipFile(self._file, "w", compression=zipfile.ZIP_STORED)
        except BaseException:
            self.abort()
            raise

    def __enter__(self) -> PackWriter:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *_: object) -> None:
        if exc_type is not None:
            self.abort()

    def add(self, name: str, data: bytes) -> int:
        """Store ``data`` as member ``name`` (not meta.json: ``commit`` writes it, last); returns its size."""
        _check_member_name(name, self.path)
        if name == META_FILE:
            raise ValueError(f"{self.path}: meta.json is written last, pass it to commit")
        with self._lock:
            if name in self._names:
                raise ValueError(f"{self.path}: member {name!r} written twice")
            self._names.add(name)
            self._archive.writestr(_member_info(name), data)
        return len(data)

    def commit(self, meta_json: bytes | None) -> None:
        """Write ``meta_json`` (when given) as the last member, and give the pack its final name."""
        with self._lock:
            if meta_json is not None:
                self._archive.writestr(_member_info(META_FILE), meta_json)
            self._archive.close()
            self._file.flush()
            if self.durable:
                os.fsync(self._file.fileno())
            self._file.close()
        os.replace(self.tmp, self.path)
        if self.durable:
            directory = os.open(self.path.parent, os.O_RDONLY)
            try:
                os.fsync(directory)
            finally:
                os.close(directory)

    def abort(self) -> None:
        """Close and remove the ``.tmp``; best effort (a full disk fails the central directory)."""
        for close in (getattr(self, "_archive", None), self._file):
            try:
                if close is not None:
                    close.close()
            except (OSError, ValueError):
                pass
        try:
            self.tmp.unlink(missing_ok=True)
        except OSError:
            pass


def write_pack(pack: Path | str, members: Iterable[tuple[str, bytes]], meta_json: bytes | None) -> None:
    """Write ``members`` (name, bytes), then ``meta.json`` when given, to ``pack`` atomically.

    The zip is written under ``pack + ".tmp"`` and renamed only when complete; on an
    error the temporary file is removed.
    """
    with PackWriter(pack) as writer:
        for name, data in members:
            writer.add(name, data)
        writer.commit(meta_json)


def _member_info(name: str) -> zipfile.ZipInfo:
    # A fixed date keeps packs of the same files byte-identical (reproducible).
    info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
    info.compress_type = zipfile.ZIP_STORED
    info.external_attr = 0o644 << 16
    return info


_END = struct.Struct("<IHHHHIIH")  # the end of central directory record, 22 bytes
_END_SIGNATURE = b"PK\x05\x06"
_CENTRAL = struct.Struct("<IHHHHHHIIIHHHHHII")  # a central directory file header, 46 bytes
_CENTRAL_SIGNATURE = 0x02014B50
_ZIP64 = 0xFFFFFFFF
_UTF8_NAME = 0x800


def _central_directory(path: Path, fd: int) -> dict[bytes, tuple[int, int, int, int]] | None:
    """UTF-8 name -> (method, header offset, size, CRC) of every member, parsed from the pack's
    central directory with two preads; None for a zip this does not read (ZIP64, split), which
    ``zipfile`` then reads. ``zipfile.ZipFile`` costs 1.5 ms for 500 members, more than reading
    a training stack's JPEGs: a worker opens a new pack per sample on a large dataset.
    ``fd``: the pack, open."""
    size = os.fstat(fd).st_size
    tail = os.pread(fd, min(size, _END.size + 0xFFFF), max(size - _END.size - 0xFFFF, 0))
    at = tail.rfind(_END_SIGNATURE)
    if at < 0 or len(tail) - at < _END.size:
        raise ValueError(f"{path}: not a readable zip (no end of central directory)")
    _, disk, directory_disk, _, count, directory_size, directory_offset, _ = _END.unpack_from(tail, at)
    if disk or directory_disk or _ZIP64 in (directory_size, directory_offset) or count == 0xFFFF:
        return None
    start = len(tail) - (size - directory_offset)
    directory = tail[start:start + directory_size] if start >= 0 else os.pread(fd, directory_size, directory_offset)
    if len(directory) < directory_size:
        raise ValueError(f"{path}: not a readable zip (central directory cut short)")
    # The hot loop of opening a pack: fields unpacked once, names kept as bytes.
    unpack, members, position = _CENTRAL.unpack_from, {}, 0
    for _ in range(count):
        try:
            (signature, _, _, flags, method, _, _, crc, _, file_size, name_size, extra_size, comment_size, _, _, _,
             offset) = unpack(directory, position)
        except struct.error:
            raise ValueError(f"{path}: not a readable zip (central directory cut short)") from None
        if signature != _CENTRAL_SIGNATURE:
            raise ValueError(f"{path}: not a readable zip (bad central directory entry)")
        if file_size == _ZIP64 or offset == _ZIP64:
            return None
        name_start = position + _CENTRAL.size
        name = directory[name_start:name_start + name_size]
        if not (flags & _UTF8_NAME or name.isascii()):
            name = name.decode("cp437").encode()
        members[name] = (method, offset, file_size, crc)
        position = name_start + name_size + extra_size + comment_size
    return members


def _zipfile_directory(path: Path) -> dict[bytes, tuple[int, int, int, int]]:
    with zipfile.ZipFile(path) as archive:
        return {info.filename.encode(): (info.compress_type, info.header_offset, info.file_size, info.CRC)
                for info in archive.infolist()}


class _PackIndex:
    """One pack's members: name -> (header offset, size, CRC), read from its central directory.

    The pack stays open while its index lives (the store keeps the recent ones): one open per
    video rather than per member, and the members are read from the very file the index
    describes, even if a re-extraction has renamed a new pack over it meanwhile."""

    def __init__(self, path: Path):
        self.path = path
        self.file = open(path, "rb", buffering=0)  # noqa: SIM115 - closed when the index is dropped
        try:
            members = _central_directory(path, self.file.fileno())
            if members is None:
                members = _zipfile_directory(path)
        except (zipfile.BadZipFile, OSError, EOFError, struct.error) as error:
            self.file.close()
            raise ValueError(f"{path}: not a readable zip ({error})") from None
        except BaseException:
            self.file.close()
            raise
        compressed = next((name for name, entry in members.items() if entry[0] != zipfile.ZIP_STORED), None)
        if compressed is not None:
            self.file.close()
            raise ValueError(f"{path}: member {compressed.decode()!r} is compressed; packs store members uncompressed")
        self.entries: dict[bytes, tuple[int, int, int, int]] = members  # name -> (method, offset, size, CRC)

    @property
    def members(self) -> dict[str, tuple[int, int, int]]:
        """Member name -> (header offset, size, CRC)."""
        return {name.decode(): entry[1:] for name, entry in self.entries.items()}

    def __contains__(self, name: str) -> bool:
        return name.encode() in self.entries

    def read(self, name: str) -> bytes:
        try:
            _, offset, size, crc = self.entries[name.encode()]
        except KeyError:
            raise FileNotFoundError(f"{self.path}: no member {name!r}") from None
        encoded = name.encode()
        # One read covers the local header, the name, and (usually) the extra field and
        # the data; a longer extra field costs a second read.
        slack = 64
        fd = self.file.fileno()
        head = os.pread(fd, _LOCAL_HEADER.size + len(encoded) + slack + size, offset)
        if len(head) < _LOCAL_HEADER.size:
            raise ValueError(f"{self.path}: truncated at member {name!r}")
        fields = _LOCAL_HEADER.unpack_from(head)
        if fields[0] != _LOCAL_SIGNATURE:
            raise ValueError(f"{self.path}: member {name!r} has no local header at offset {offset}")
        start = _LOCAL_HEADER.size + fields[9] + fields[10]
        if head[_LOCAL_HEADER.size:_LOCAL_HEADER.size + fields[9]] != encoded:
            raise ValueError(f"{self.path}: member {name!r}'s local header names another file")
        data = head[start:start + size]
        if len(data) < size:
            data = os.pread(fd, size, offset + start)
        if len(data) != size:
            raise ValueError(f"{self.path}: truncated in member {name!r}")
        if zlib.crc32(data) != crc:
            raise ValueError(f"{self.path}: member {name!r} fails its CRC check (damaged pack)")
        return data


class PackedFlowStore(FolderFlowStore):
    """Flow fields and RGB frames stored as one uncompressed zip per video.

    The same methods and meanings as ``FolderFlowStore`` (``layout`` and ``bound`` apply
    to packs without meta.json, made from denseflow or mmaction2 folders); ``folder``
    returns the pack's path. Only packs under their final name are read: a ``.tmp`` is
    a pack being written.

    With ``folders=True`` a video without a pack is read from its folder instead (a
    root holding both during a conversion; see ``open_flow_store``).
    """

    def __init__(self, root: Path | str, layout: FrameLayout | None = None, bound: float = DEFAULT_BOUND,
                 folders: bool = False):
        super().__init__(root, layout, bound)
        self.folders = folders
        self._indexes: OrderedDict[str, _PackIndex] = OrderedDict()
        self._packed: OrderedDict[str, None] = OrderedDict()  # recently seen packs (bounded: 300k ids)

    def __getstate__(self) -> dict:
        # Open packs stay in this process: a store pickled into spawned DataLoader workers
        # (and their copies) opens its own.
        return {**self.__dict__, "_indexes": OrderedDict()}

    def is_packed(self, video_id: str) -> bool:
        """Whether the video is read from a pack (always, without ``folders``)."""
        if not self.folders:
            return True
        if video_id in self._packed:
            self._packed.move_to_end(video_id)
            return True
        # A pack once seen stays (it is complete); a folder is looked at again each
        # time, as a conversion may pack it meanwhile.
        if pack_path(self.root, video_id).is_file():
            self._packed[video_id] = None
            if len(self._packed) > _KNOWN_PACKS:
                self._packed.popitem(last=False)
            return True
        return False

    def folder(self, video_id: str) -> Path:
        return pack_path(self.root, video_id) if self.is_packed(video_id) else super().folder(video_id)

    def exists(self, video_id: str) -> bool:
        return pack_path(self.root, video_id).is_file() or (self.folders and super().exists(video_id))

    def stamp_paths(self, video_id: str) -> list[Path]:
        # Both while folders are read too: the pack may appear beside a folder (or neither yet).
        pack = pack_path(self.root, video_id)
        return [pack, FolderFlowStore.folder(self, video_id)] if self.folders else [pack]

    def _index(self, video_id: str) -> _PackIndex:
        index = self._indexes.get(video_id)
        if index is None:
            path = pack_path(self.root, video_id)
            try:
                index = _PackIndex(path)
            except FileNotFoundError:
                raise FileNotFoundError(f"no pack for video {video_id!r}: {path}") from None
            self._indexes[video_id] = index
            if len(self._indexes) > _CACHED_VIDEOS:
                self._indexes.popitem(last=False)
        else:
            self._indexes.move_to_end(video_id)
        return index

    def _read_meta(self, video_id: str) -> FlowMeta | None:
        if not self.is_packed(video_id):
            return super()._read_meta(video_id)
        if not self.exists(video_id):
            return None
        index = self._index(video_id)
        if META_FILE not in index:
            return None
        return parse_meta(index.read(META_FILE).decode("utf-8"), f"{index.path}:{META_FILE}")

    def _names(self, video_id: str) -> set[str]:
        if not self.is_packed(video_id):
            return super()._names(video_id)
        return set(self._index(video_id).members)

    def member(self, video_id: str, name: str) -> bytes:
        """The bytes of one member of the video's pack (a file of its folder layout)."""
        return self._index(video_id).read(name)

    def _read_image(self, video_id: str, path: Path, color: bool) -> np.ndarray:
        # The caller's path says where the image is (``folder`` decided it once per read): no
        # stat, and no pack path built (safe_join, ~20 us), per image of a 500-image test item.
        if path.parent.suffix != PACK_SUFFIX:
            return super()._read_image(video_id, path, color)
        index = self._indexes.get(video_id)
        if index is None or index.path != path.parent:
            if path.parent != pack_path(self.root, video_id):  # a folder named like a pack
                return super()._read_image(video_id, path, color)
            index = self._index(video_id)
        return decode_image(np.frombuffer(index.read(path.name), dtype=np.uint8), path, color)  # <pack>/<member>


def open_flow_store(root: Path | str, layout: FrameLayout | None = None,
                    bound: float = DEFAULT_BOUND) -> FolderFlowStore:
    """The store of the flow under ``root``, chosen per video from what is on disk.

    A root may hold both packs and folders during a conversion (``python -m flow pack``
    running). A pack under its final name is complete by construction (written as
    ``.tmp``, then renamed), so it wins; otherwise the video's folder is read.
    """
    return PackedFlowStore(root, layout, bound, folders=True)
