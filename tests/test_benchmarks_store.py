"""benchmarks/flow_store.py: its --quick run (both tables, rows as measured, --json), and the
page-cache helpers it says "cold" with."""

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))  # the scripts import `table`
import flow_store
import page_cache
import table

READING = ("| sample | JPEGs | page cache | folder samples/s | packed samples/s | packed vs folder | "
           "folder CPU ms/sample | packed CPU ms/sample |")
DISK = ("| root | store | videos | files | directories | MiB on disk | MiB of data | on disk vs folder | "
        "index build s, cold | index build s, warm | index from cache s | index cold vs folder |")


def test_quick_run_prints_both_tables_and_writes_the_json(tmp_path, capsys):
    flow_store.main(["--quick", "--videos", "30", "--dir", str(tmp_path), "--json", str(tmp_path / "store.json")])
    out = capsys.readouterr().out
    assert "machine:" in out and READING in out and DISK in out
    assert out.index(READING) < out.index(DISK)
    assert list(tmp_path.iterdir()) == [tmp_path / "store.json"]  # the data is removed
    reading, disk = json.loads((tmp_path / "store.json").read_text())["tables"]
    cold = page_cache.cold_cache_problem(tmp_path) is None  # ext4 here; tmpfs would leave the cold rows out
    assert [row["page cache"].split()[0] for row in reading["rows"]] == (["cold", "warm"] * 4 if cold else ["warm"] * 4)
    assert [row["sample"] for row in reading["rows"]][::2 if cold else 1] == [
        "L=10 train stack", "64-field clip", "250-view test (25 x 10 fields)",
        "L=10 train stack, bytes only (no JPEG decoding)"]
    for row in reading["rows"]:
        assert row["folder samples/s"] > 0 and row["packed samples/s"] > 0
        assert row["packed vs folder"] == pytest.approx(row["packed samples/s"] / row["folder samples/s"])
        assert f"| {table.significant(row['folder samples/s'])} |" in out
    rows = {(row["root"].split()[0], row["store"]): row for row in disk["rows"]}
    assert set(rows) == {("2", "folder"), ("2", "packed"), ("30", "folder"), ("30", "packed")}
    # 30 videos of one field: 3 files each in a folder of its own (and 400 classes), one pack each.
    assert (rows["30", "folder"]["files"], rows["30", "packed"]["files"]) == (90, 30)
    assert (rows["30", "folder"]["directories"], rows["30", "packed"]["directories"]) == (60, 30)
    assert rows["30", "packed"]["MiB on disk"] < rows["30", "folder"]["MiB on disk"]
    assert all(row["index build s, warm"] > 0 for row in disk["rows"])


def test_dropped_files_leave_the_page_cache(tmp_path):
    path = tmp_path / "data.bin"
    path.write_bytes(b"x" * (1 << 20))
    path.read_bytes()
    assert page_cache.resident_fraction([path]) == 1.0
    page_cache.write_back()  # dirty pages cannot be dropped
    assert page_cache.drop([path]) == page_cache.resident_fraction([path]) < 0.05
    assert page_cache.cold_cache_problem(tmp_path) is None
