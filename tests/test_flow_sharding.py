import pytest

from flow.sharding import Shard, parse_shard, process_device, shard_from_env


@pytest.mark.parametrize("count", [1, 2, 3])
def test_shards_cover_every_item_exactly_once(count):
    items = [f"class{i % 4}/video{i:03d}" for i in range(17)]
    picked = [item for index in range(count) for item in Shard(index, count).select(items)]
    assert sorted(picked) == sorted(items)
    assert len(picked) == len(set(picked))


def test_shards_are_interleaved_and_balanced():
    items = list(range(10))
    assert Shard(1, 3).select(items) == [1, 4, 7]
    sizes = [len(Shard(i, 3).select(items)) for i in range(3)]
    assert max(sizes) - min(sizes) <= 1


def test_parse_shard():
    assert parse_shard("2/5") == Shard(2, 5)
    assert str(parse_shard("0/1")) == "0/1"


@pytest.mark.parametrize("text", ["3", "3/3", "-1/2", "a/b", "1/0", "1/2/3"])
def test_parse_shard_rejects_bad_text(text):
    with pytest.raises(ValueError, match="I/N"):
        parse_shard(text)


def test_no_environment_means_one_shard():
    assert shard_from_env({}) == Shard(0, 1)


def test_slurm_array_starting_at_zero():
    env = {"SLURM_ARRAY_TASK_ID": "2", "SLURM_ARRAY_TASK_COUNT": "4", "SLURM_ARRAY_TASK_MIN": "0"}
    assert shard_from_env(env) == Shard(2, 4)


def test_slurm_array_starting_at_one():
    env = {"SLURM_ARRAY_TASK_ID": "10", "SLURM_ARRAY_TASK_COUNT": "10", "SLURM_ARRAY_TASK_MIN": "1"}
    assert shard_from_env(env) == Shard(9, 10)


def test_slurm_array_with_step():
    env = {
        "SLURM_ARRAY_TASK_ID": "6",
        "SLURM_ARRAY_TASK_COUNT": "4",
        "SLURM_ARRAY_TASK_MIN": "0",
        "SLURM_ARRAY_TASK_STEP": "2",
    }
    assert shard_from_env(env) == Shard(3, 4)


def test_slurm_wins_over_torchrun():
    env = {"SLURM_ARRAY_TASK_ID": "1", "SLURM_ARRAY_TASK_COUNT": "2", "RANK": "0", "WORLD_SIZE": "8"}
    assert shard_from_env(env) == Shard(1, 2)


def test_torchrun_rank_and_world_size():
    assert shard_from_env({"RANK": "3", "WORLD_SIZE": "8"}) == Shard(3, 8)


def test_bad_environment_value_names_the_variable():
    with pytest.raises(ValueError, match="WORLD_SIZE"):
        shard_from_env({"RANK": "0", "WORLD_SIZE": "many"})


def test_torchrun_processes_take_their_own_gpu():
    assert process_device("cuda", {"LOCAL_RANK": "3", "RANK": "11"}) == "cuda:3"
    assert process_device("cuda:1", {"LOCAL_RANK": "3"}) == "cuda:1"  # chosen by hand: kept
    assert process_device("cpu", {"LOCAL_RANK": "3"}) == "cpu"
    assert process_device("cuda", {}) == "cuda"
    with pytest.raises(ValueError, match="LOCAL_RANK"):
        process_device("cuda", {"LOCAL_RANK": "first"})
