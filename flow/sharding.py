"""Splitting a sorted video list into N disjoint shards, one per job.

Shard I of N takes every N-th item starting at I. Interleaving (rather than
contiguous blocks) keeps the shards balanced when long and short videos cluster,
as they do when a dataset is sorted by class.

When no ``--shard`` is given, a job launched as a SLURM array task or by torchrun
finds its shard in the environment, so one command line serves every task; under
torchrun, ``--device cuda`` is also each process's own GPU (``process_device``).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TypeVar

T = TypeVar("T")


@dataclass(frozen=True)
class Shard:
    """Shard ``index`` (0-based) of ``count``."""

    index: int = 0
    count: int = 1

    def __post_init__(self) -> None:
        if self.count < 1:
            raise ValueError(f"shard count must be at least 1, got {self.count}")
        if not 0 <= self.index < self.count:
            raise ValueError(f"shard index must be in 0..{self.count - 1}, got {self.index}")

    def select(self, items: Sequence[T]) -> list[T]:
        """This shard's items: every ``count``-th one starting at ``index``."""
        return list(items[self.index :: self.count])

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


def parse_shard(text: str) -> Shard:
    """Parse ``"I/N"`` (0-based I). Raises ValueError with the reason."""
    index, sep, count = text.partition("/")
    try:
        if not sep:
            raise ValueError
        return Shard(int(index), int(count))
    except ValueError as error:
        reason = f": {error}" if str(error) else ""
        raise ValueError(f"expected I/N with 0 <= I < N, got {text!r}{reason}") from None


def _int_var(env: Mapping[str, str], name: str) -> int:
    try:
        return int(env[name])
    except ValueError:
        raise ValueError(f"environment variable {name}={env[name]!r} is not an integer") from None


def shard_from_env(env: Mapping[str, str] | None = None) -> Shard:
    """The shard this process should take, from SLURM array or torchrun variables.

    SLURM array task ids need not start at 0 (``--array=1-10``) nor be contiguous
    (``--array=0-20:2``), so the index is the task's position in the array:
    ``(ID - MIN) / STEP``. torchrun sets RANK and WORLD_SIZE. Neither: shard 0/1.
    """
    env = os.environ if env is None else env
    if "SLURM_ARRAY_TASK_ID" in env and "SLURM_ARRAY_TASK_COUNT" in env:
        task_id = _int_var(env, "SLURM_ARRAY_TASK_ID")
        first = _int_var(env, "SLURM_ARRAY_TASK_MIN") if "SLURM_ARRAY_TASK_MIN" in env else 0
        step = _int_var(env, "SLURM_ARRAY_TASK_STEP") if "SLURM_ARRAY_TASK_STEP" in env else 1
        position, remainder = divmod(task_id - first, step)
        if remainder:
            raise ValueError(f"SLURM_ARRAY_TASK_ID={task_id} is not on the array's step {step} from {first}")
        return Shard(position, _int_var(env, "SLURM_ARRAY_TASK_COUNT"))
    if "RANK" in env and "WORLD_SIZE" in env:
        return Shard(_int_var(env, "RANK"), _int_var(env, "WORLD_SIZE"))
    return Shard()


def process_device(device: str, env: Mapping[str, str] | None = None) -> str:
    """The GPU a process takes for ``device``: ``cuda`` is ``cuda:LOCAL_RANK`` under torchrun,
    whose processes on a node all see every GPU; anything else, or no torchrun, is unchanged
    (a SLURM task given one GPU sees it as ``cuda``)."""
    env = os.environ if env is None else env
    if device != "cuda" or "LOCAL_RANK" not in env:
        return device
    return f"cuda:{_int_var(env, 'LOCAL_RANK')}"
