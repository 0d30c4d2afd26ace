"""The loader's shards mode: batches planned from the shards' metadata, read sequentially from
the tar shards (:mod:`chunkformer.data.shards`) by DataLoader workers.

Plan. When the data is built, every shard's ``.json`` members are read (the audio members are
seeked over, not read) for the utterances' durations: :func:`index_shards`. Each epoch,
:func:`~chunkformer.data.shards.split_shards` deals the shards out to (rank, worker) — a seeded
shuffle per epoch, disjoint, covering the list. A worker reads its shards in that order; its
utterances, in shard order, are cut into windows of ``sort_window``, each sorted longest first and
packed into batches of at most ``max_frames_in_batch`` summed frames (WeNet's sort buffer: memory
holds about one window of audio bytes per worker). A rank's batch order is its workers' batch
lists dealt round robin (worker 0's first, worker 1's first, ..., a worker that has run out is
passed over); the loader reorders whatever the DataLoader delivers into that order.

Every rank computes every rank's plan (from the index alone), so all ranks agree on the epoch's
length: training keeps the first ``min`` over ranks of each rank's batches (the tail of the
longer ranks is dropped, a different tail each epoch), evaluation pads the shorter ranks with
empty batches at the end (nothing dropped or read twice).

Exact resume: ``batches(epoch, start=k)`` yields exactly batches k, k+1, ... of the uninterrupted
epoch (bit for bit: item randomness comes from (seed, epoch, the utterance's position in the
shard list)). Workers skip the batches before k without decoding their audio, and skip whole
shards that hold none of the remaining batches' utterances; the bytes of a partly needed shard
are still read through up to the utterances needed (tar is sequential).
"""
import json
import tarfile
from functools import partial
from typing import Dict, List, Optional, Tuple

import numpy as np
import torch

from chunkformer.data.collate import Batch, collate
from chunkformer.data.dataset import ExampleBuilder, example_generator
from chunkformer.data.long_form import (LongFormConfig, LongFormPlanner, Timing, members_of,
                                        unit_frames)
from chunkformer.data.sampler import pack
from chunkformer.data.shards import decode_audio, iterate_shard, split_shards

Item = Tuple[int, int]  # (shard index in the list, position in the shard)


def index_shards(shards: List[str]) -> List[Timing]:
    """The :class:`~chunkformer.data.long_form.Timing` of each shard's utterances (durations,
    groups, start / end in their source recordings), in shard order, from its ``.json``
    members."""
    index = []
    for path in shards:
        metas = []
        try:
            with tarfile.open(path, "r:") as tar:  # seekable: iteration skips member data
                for member in tar:
                    if member.name.endswith(".json"):
                        meta = json.loads(tar.extractfile(member).read())
                        if meta.get("duration") is None:
                            raise ValueError(f"{path}: {member.name} has no duration; repack "
                                             "the shards from a manifest with durations")
                        metas.append(meta)
        except (tarfile.TarError, OSError, json.JSONDecodeError) as e:
            raise ValueError(f"{path}: unreadable shard: {e}") from e
        index.append(Timing.of_rows([_Meta(m) for m in metas]))
    return index


class _Meta:
    """A shard member's metadata with the attributes :meth:`Timing.of_rows` reads."""

    def __init__(self, meta: dict):
        source = meta.get("source") or {}
        self.duration, self.group = meta["duration"], meta.get("group")
        self.start, self.end = source.get("start"), source.get("end")


class ShardPlan:
    """Which batches each (rank, worker) makes in an epoch, computed from the index alone.

    Args:
        shards: shard paths (the shard list, unique).
        frames: fbank frames of each shard's utterances (from :func:`index_shards`); -1 marks
            an utterance left out (duration limits).
        max_frames_in_batch, sort_window: as in :func:`~chunkformer.data.sampler.pack`.
        seed: seeds the per-epoch shard shuffle.
        world_size: ranks; num_workers: DataLoader workers per rank (0 counts as 1).
        long_form: joins consecutive utterances of a worker's reading order into long-form
            units (:mod:`chunkformer.data.long_form`), planned from ``timings``, the shards'
            :func:`index_shards`; None: utterances alone.
    """

    def __init__(self, shards: List[str], frames: List[np.ndarray], max_frames_in_batch: int,
                 sort_window: int, seed: int, world_size: int, num_workers: int,
                 long_form: Optional[LongFormConfig] = None,
                 timings: Optional[List[Timing]] = None):
        if len(set(shards)) != len(shards):
            raise ValueError("the shard list names a shard twice")
        self.shards, self.frames = list(shards), frames
        self.max_frames, self.sort_window, self.seed = max_frames_in_batch, sort_window, seed
        self.world_size, self.num_workers = world_size, max(1, num_workers)
        self.offsets = np.cumsum([0] + [len(f) for f in frames])  # global item id of (s, 0)
        self._position = {path: i for i, path in enumerate(self.shards)}
        self._orders: Dict[int, List[List[Tuple[int, int]]]] = {}
        self.long_form = None
        if long_form is not None:
            self.long_form = LongFormPlanner(long_form, Timing(
                np.concatenate([t.durations for t in timings]),
                [g for t in timings for g in t.groups],
                np.concatenate([t.starts for t in timings]),
                np.concatenate([t.ends for t in timings])))

    def worker_shards(self, epoch: int, rank: int, worker: int) -> List[int]:
        """Indices of the shards the worker reads this epoch, in reading order."""
        paths = split_shards(self.shards, rank, self.world_size, worker, self.num_workers,
                             epoch, self.seed)
        return [self._position[p] for p in paths]

    def worker_batches(self, epoch: int, rank: int, worker: int) -> List[list]:
        """The worker's batches this epoch: its utterances in reading order (or the long-form
        units made of them), packed."""
        shards = self.worker_shards(epoch, rank, worker)
        items = [(s, j) for s in shards for j in np.flatnonzero(self.frames[s] >= 0).tolist()]
        if self.long_form is not None and self.long_form.joins(epoch):
            rng = np.random.default_rng([self.seed, epoch, rank, worker])
            items = self.long_form.units(items, rng, key=lambda item: self.item_id(*item))
        frames = np.array([unit_frames(u, lambda m: self.frames[m[0]][m[1]]) for u in items],
                          dtype=np.int64)
        batches = pack(np.arange(len(items)), frames, self.max_frames, self.sort_window)
        return [[items[i] for i in batch] for batch in batches]

    def item_id(self, s: int, j: int) -> int:
        """The global id of utterance j of shard s (its place in the whole shard list)."""
        return int(self.offsets[s]) + j

    def rank_order(self, epoch: int, rank: int) -> List[Tuple[int, int]]:
        """The rank's batches as (worker, index in that worker's list), dealt round robin."""
        if epoch not in self._orders:
            self._orders = {epoch: [self._deal(epoch, r) for r in range(self.world_size)]}
        return self._orders[epoch][rank]

    def _deal(self, epoch: int, rank: int) -> List[Tuple[int, int]]:
        counts = [len(self.worker_batches(epoch, rank, w)) for w in range(self.num_workers)]
        return [(w, j) for j in range(max(counts)) for w, c in enumerate(counts) if j < c]

    def num_batches(self, epoch: int, uneven: str) -> int:
        """Batches every rank yields: the fewest any rank has ("drop"), or the most ("empty")."""
        counts = [len(self.rank_order(epoch, r)) for r in range(self.world_size)]
        return min(counts) if uneven == "drop" else max(counts)


class ShardStream(torch.utils.data.IterableDataset):
    """Yields ``((worker, index), Batch)`` for the batch range ``ranges[worker]`` of the
    worker's list in ``epoch``; the loader sets both before each pass (workers are started per
    pass, so they see them).

    Args:
        plan: the :class:`ShardPlan`; rank: this process; seed: item generators' seed.
        build: the :class:`~chunkformer.data.dataset.ExampleBuilder`.
    """

    def __init__(self, plan: ShardPlan, build: ExampleBuilder, rank: int, seed: int):
        self.plan, self.build, self.rank, self.seed = plan, build, rank, seed
        self.epoch, self.ranges = 0, {}

    def __iter__(self):
        info = torch.utils.data.get_worker_info()
        worker = 0 if info is None else info.id
        lo, hi = self.ranges.get(worker, (0, 0))
        batches = [[members_of(unit) for unit in batch]
                   for batch in self.plan.worker_batches(self.epoch, self.rank, worker)[lo:hi]]
        needed = {item for batch in batches for members, _ in batch for item in members}
        ready, k = {}, 0
        for s in self.plan.worker_shards(self.epoch, self.rank, worker):
            if not any((s, j) in needed for j in range(len(self.plan.frames[s]))):
                continue  # nothing left to make from this shard: not even opened
            for j, (row, data) in enumerate(iterate_shard(self.plan.shards[s])):
                if j >= len(self.plan.frames[s]):
                    break  # caught below: the shard changed since it was indexed
                if (s, j) in needed:
                    ready[s, j] = (row, data)
                while k < len(batches) and all(item in ready for members, _ in batches[k]
                                               for item in members):
                    yield (worker, lo + k), self._batch(batches[k], ready)
                    k += 1
                if k == len(batches):
                    return
        if k < len(batches):
            raise RuntimeError(f"worker {worker}: shards changed since they were indexed "
                               f"(batch {lo + k} of epoch {self.epoch} cannot be made)")

    def _batch(self, units: List[tuple], ready: dict) -> Batch:
        """Collate the units ((members, gaps) pairs) of one batch from the ready rows."""
        items = []
        for members, gaps in units:
            rows, data = zip(*(ready.pop(item) for item in members))
            g = example_generator(self.seed, self.epoch, self.plan.item_id(*members[0]))
            items += self.build.compose(rows, gaps, g, [partial(decode_audio, d, r.audio)
                                                        for r, d in zip(rows, data)])
        return collate(items, self.build.num_mel_bins)
