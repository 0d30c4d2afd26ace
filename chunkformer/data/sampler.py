"""Dynamic batches by total fbank frames, length-bucketed, seeded, and equal across ranks.

Batch cost is the **sum** of the utterances' fbank frames (not max length × batch size): the
model encodes a masked batch, whose work and memory grow with the real frames, not with the
padding. Padding still costs the collated (B, T, F) tensor, so utterances are bucketed by
length: each epoch the indices are shuffled, cut into windows of ``sort_window`` utterances,
each window is sorted by length and packed greedily into batches of at most
``max_frames_in_batch`` frames (an utterance longer than that is a batch of its own), and the
batch order is shuffled again.

Every rank computes the same global list from (seed, epoch) and takes every
``world_size``-th batch, so all ranks always get the **same number** of batches (uneven counts
hang DDP collectives):

- ``uneven="drop"`` (training): the last ``len % world_size`` batches are dropped (a different
  few each epoch); with fewer batches than ranks they are repeated so each rank gets one.
- ``uneven="empty"`` (evaluation: no utterance dropped or counted twice): ranks short of a
  batch get an empty one (``[]``), which collates to a batch of size 0.

With long-form examples (:mod:`chunkformer.data.long_form`) a training epoch first plans its
units from the same generator (rows alone or joined into a
:class:`~chunkformer.data.long_form.Composition`) and batches those, by their joined length.

The plan is a pure function of (seed, epoch, rank, world size): resuming at batch k of an epoch
recomputes it (milliseconds, no audio read) and starts at k.
"""
from typing import List, Optional, Sequence

import numpy as np

from chunkformer.data.features import SAMPLE_RATE, num_frames
from chunkformer.data.long_form import LongFormPlanner, neighbour_order, unit_frames


def seconds_to_frames(seconds: float, stretch: float = 1.0) -> int:
    """fbank frames of ``seconds`` of audio lengthened by ``stretch``."""
    return num_frames(int(seconds * stretch * SAMPLE_RATE))


def utterance_frames(rows: Sequence, stretch: float = 1.0) -> List[int]:
    """fbank frames of each row from its ``duration`` (seconds) × ``stretch`` (e.g. 1/0.9
    when speed perturbation may slow audio down by 0.9).

    Raises:
        ValueError: a row without a duration, naming it.
    """
    frames = []
    for i, row in enumerate(rows):
        if row.duration is None:
            raise ValueError(f"utterance {row.key!r} (row {i}) has no duration, which "
                             "batching needs: run `python -m chunkformer.bin.prepare_data` on "
                             "the list to add durations")
        frames.append(seconds_to_frames(row.duration, stretch))
    return frames


def pack(order: np.ndarray, frames: np.ndarray, max_frames: int, sort_window: int
         ) -> List[List[int]]:
    """Cut ``order`` (indices into ``frames``) into windows of ``sort_window``, sort each window
    longest first, and fill batches of at most ``max_frames`` summed frames in that order (an
    index over the budget alone is a batch; a batch may span two windows)."""
    batches, total = [], max_frames + 1
    for start in range(0, len(order), sort_window):
        window = order[start:start + sort_window]
        for i in window[np.argsort(-frames[window], kind="stable")].tolist():
            if total + frames[i] > max_frames:
                batches.append([])
                total = 0
            batches[-1].append(i)
            total += int(frames[i])
    return batches


class DynamicBatchSampler:
    """Batches of indices into ``frames`` for one rank (see the module docstring).

    Args:
        frames: fbank frames of each utterance.
        max_frames_in_batch: budget of summed frames per batch.
        seed: with the epoch, seeds the shuffles.
        rank, world_size: this process and the number of processes.
        shuffle: shuffle utterances and batches (training); off, the order is by length.
        sort_window: utterances sorted together (larger = less padding, less randomness).
        uneven: "drop" (training) or "empty" (evaluation), how rank counts are equalised.
        long_form: plans long-form units over the same rows each (shuffled) epoch; a batch
            then holds units (an index, or a ``Composition`` of indices). None: indices only.
    """

    def __init__(self, frames: Sequence[int], max_frames_in_batch: int, seed: int = 0,
                 rank: int = 0, world_size: int = 1, shuffle: bool = True,
                 sort_window: int = 1000, uneven: str = "drop",
                 long_form: Optional[LongFormPlanner] = None):
        if max_frames_in_batch <= 0 or sort_window <= 0:
            raise ValueError(f"max_frames_in_batch ({max_frames_in_batch}) and sort_window "
                             f"({sort_window}) must be positive")
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} outside [0, {world_size})")
        if uneven not in ("drop", "empty"):
            raise ValueError(f"uneven={uneven!r}: use 'drop' or 'empty'")
        self.frames = np.asarray(frames, dtype=np.int64)
        self.max_frames, self.seed = max_frames_in_batch, seed
        self.rank, self.world_size = rank, world_size
        self.shuffle, self.sort_window, self.uneven = shuffle, sort_window, uneven
        self.long_form = long_form if shuffle else None
        self._cached: tuple = (None, None)

    def global_batches(self, epoch: int) -> List[list]:
        """Every rank's batches of ``epoch``, before the split across ranks."""
        if self._cached[0] == epoch:
            return self._cached[1]
        rng = np.random.default_rng([self.seed, epoch])
        if self.long_form is None or not self.long_form.joins(epoch):
            n = len(self.frames)
            order = rng.permutation(n) if self.shuffle else np.arange(n)
            batches = pack(order, self.frames, self.max_frames, self.sort_window)
        else:
            units = self.long_form.units(neighbour_order(self.long_form.timing, rng), rng)
            frames = np.array([unit_frames(u, self.frames.__getitem__) for u in units],
                              dtype=np.int64)
            batches = pack(rng.permutation(len(units)), frames, self.max_frames,
                           self.sort_window)
            batches = [[units[i] for i in batch] for batch in batches]
        if self.shuffle:
            batches = [batches[i] for i in rng.permutation(len(batches))]
        self._cached = (epoch, batches)
        return batches

    def batches(self, epoch: int) -> List[list]:
        """This rank's batches of ``epoch``; the same count on every rank."""
        batches, world = list(self.global_batches(epoch)), self.world_size
        if self.uneven == "empty":
            per_rank = -(-len(batches) // world)
            batches += [[]] * (per_rank * world - len(batches))
        elif batches and len(batches) < world:
            batches = [batches[i % len(batches)] for i in range(world)]
        per_rank = len(batches) // world
        return batches[self.rank:per_rank * world:world]

    def num_batches(self, epoch: int) -> int:
        return len(self.batches(epoch))
