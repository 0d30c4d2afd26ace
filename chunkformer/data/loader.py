"""The YAML ``data:`` section → the trainer's batches: ``build_data(...).batches(epoch, start)``.

Keys of ``data:`` (defaults in :class:`DataConfig`; an unknown key is an error)::

    max_frames_in_batch: 12000      # summed fbank frames per batch (100 frames = 1 s)
    num_workers: 2                  # DataLoader worker processes (0: load in this process)
    prefetch_factor: 2              # batches each worker prepares ahead
    pin_memory: false               # page-locked batches, for GPU training
    sort_window: 1000               # utterances sorted by length together (sampler.py)
    min_duration: 0.0               # seconds; shorter utterances are left out at build time
    max_duration: null              # seconds; longer ones are left out (null: no limit)
    fbank: {num_mel_bins: 80, dither: 1.0}  # dither in training only, 0 in evaluation
    speed_perturb: [0.9, 1.0, 1.1]  # discrete factors (SpeedPerturb); null: off
    spec_augment: {}                # SpecAugment keywords ({}: its defaults); null: off
    telephone: null                 # TelephoneChannel keywords: {prob: 0.5, snr_db: [10, 30]}
    noise: null                     # NoiseMixer: {list: noises.txt, prob: 0.5, snr_db: [5, 20]}
    long_form: null                 # join utterances into long examples (long_form.py):
                                    # {prob: 0.5, seconds: [20, 60], gap: [0.2, 2.0],
                                    #  gap_kinds: {background: 1, silence: 1, line: 1, breath: 1},
                                    #  start_epoch: 0}

Augmentation, dither and long-form examples apply only with ``train=True``; evaluation data is
read as at inference. With precomputed features (``feats_scp``) waveform augmentation is off and SpecAugment
stays on.

Sources. A list of manifest rows is served map-style (:class:`SpeechData`): batches are planned
by :class:`~chunkformer.data.sampler.DynamicBatchSampler` from the rows' durations (scaled by the
slowest speed factor); training drops the few batches that do not divide among ranks, evaluation
pads ranks with empty batches. A ``shards.list`` path is streamed from tar shards
(:class:`ShardData`, :mod:`chunkformer.data.shard_stream`), planned from the shards' metadata.
Either way every rank gets the same number of batches.

Exact resume: ``batches(epoch, start=k)`` yields the batches k, k+1, ... of the epoch, equal to
the ones an uninterrupted run yields (features included, bit for bit: each item's randomness
comes from (seed, epoch, item), and items are made on one thread wherever they are made); the
first k batches are never loaded. The worker count never changes a manifest's batches; in shards
mode it does (shards are dealt to workers), so resume a shards run with the same
``num_workers``.
"""
import logging
import math
import os
import signal
from collections import Counter
from dataclasses import dataclass, field, fields
from functools import partial
from typing import Dict, Iterator, List, Optional

import numpy as np
import torch

from chunkformer.config import refuse_unknown
from chunkformer.data.augment import NoiseMixer, SpecAugment, SpeedPerturb, TelephoneChannel
from chunkformer.data.collate import Batch, collate
from chunkformer.data.dataset import ExampleBuilder, SpeechDataset
from chunkformer.data.long_form import LongFormConfig, LongFormPlanner, Timing
from chunkformer.data.sampler import DynamicBatchSampler, seconds_to_frames, utterance_frames
from chunkformer.data.shard_stream import ShardPlan, ShardStream, index_shards
from chunkformer.data.shards import read_shard_list

logger = logging.getLogger(__name__)


@dataclass
class FbankConfig:
    """``data.fbank``: mel bands, and the Kaldi dither amplitude used in training."""

    num_mel_bins: int = 80
    dither: float = 1.0


@dataclass
class DataConfig:
    """The ``data:`` section (documented in the module docstring)."""

    max_frames_in_batch: int = 12000
    num_workers: int = 2
    prefetch_factor: int = 2
    pin_memory: bool = False
    sort_window: int = 1000
    min_duration: float = 0.0
    max_duration: Optional[float] = None
    fbank: FbankConfig = field(default_factory=FbankConfig)
    speed_perturb: Optional[List[float]] = field(default_factory=lambda: [0.9, 1.0, 1.1])
    spec_augment: Optional[dict] = field(default_factory=dict)
    telephone: Optional[dict] = None
    noise: Optional[dict] = None
    long_form: Optional[dict] = None

    @classmethod
    def from_dict(cls, conf: dict) -> "DataConfig":
        refuse_unknown("data", conf, {f.name for f in fields(cls)})
        return cls(**{**conf, "fbank": _make("fbank", FbankConfig, **conf.get("fbank", {}))})


def _make(key: str, make, *args, **kwargs):
    """``make(*args, **kwargs)`` with a bad keyword reported as a ``data.<key>`` error."""
    try:
        return make(*args, **kwargs)
    except TypeError as e:
        raise ValueError(f"data.{key}: {e}") from None


def _transforms(cfg: DataConfig, train: bool, waveform: bool):
    """(waveform transforms, feature transforms, speed stretch) for the configuration."""
    wave, feats, stretch = [], [], 1.0
    if train and waveform and cfg.speed_perturb:
        speed = SpeedPerturb(cfg.speed_perturb)
        wave.append(speed)
        stretch = speed.max_stretch
    if train and waveform and cfg.telephone is not None:
        wave.append(_make("telephone", TelephoneChannel, **cfg.telephone))
    if train and waveform and cfg.noise is not None:
        noise = dict(cfg.noise)
        if "list" not in noise:
            raise ValueError("data.noise: give 'list', a file with one noise audio path a line")
        wave.append(_make("noise", NoiseMixer.from_list, noise.pop("list"), **noise))
    if train and cfg.spec_augment is not None:
        feats.append(_make("spec_augment", SpecAugment, **cfg.spec_augment))
    return wave, feats, stretch


def _on_one_thread(loader) -> Iterator:
    """Iterate ``loader`` in this process with torch on one thread while an item is made, as
    in a DataLoader worker: multi-threaded convolutions (the resampler) round differently, and
    the worker count must not change a bit of the data. The caller's thread count is restored
    before each batch is handed over."""
    threads, batches = torch.get_num_threads(), iter(loader)
    while True:
        torch.set_num_threads(1)
        try:
            batch = next(batches)
        except StopIteration:
            return
        finally:
            torch.set_num_threads(threads)
        yield batch


class BatchSource:
    """What the trainer iterates: ``batches(epoch, start)`` and ``num_batches(epoch)``, with
    skipped items counted and logged once per pass. Made by :func:`build_data`.

    Attributes:
        loader: the ``torch.utils.data.DataLoader``.
        left_out: rows dropped at build time for their duration.
        skip_counts: skipped items seen so far, by kind (``Counter``).
    """

    def __init__(self, loader: torch.utils.data.DataLoader, left_out: int = 0):
        self.loader, self.left_out = loader, left_out
        self.skip_counts: Counter = Counter()

    def num_batches(self, epoch: int) -> int:
        raise NotImplementedError

    def _iterate(self, epoch: int, start: int) -> Iterator[Batch]:
        raise NotImplementedError

    def _loaded(self) -> Iterator:
        return iter(self.loader) if self.loader.num_workers else _on_one_thread(self.loader)

    def batches(self, epoch: int, start: int = 0) -> Iterator[Batch]:
        """Batches ``start``, ``start + 1``, ... of ``epoch``; the first ``start`` are never
        loaded, and the rest equal those of an uninterrupted pass."""
        counts: Counter = Counter()
        for batch in self._iterate(epoch, start):
            counts.update(s.kind for s in batch.skipped)
            yield batch
        if counts:
            self.skip_counts.update(counts)
            shown = ", ".join(f"{kind} {n}" for kind, n in sorted(counts.items()))
            logger.warning("epoch %d: %d items skipped (%s)", epoch, sum(counts.values()), shown)


class _Plan:
    """The DataLoader's batch sampler: the (epoch, index) lists of the current pass, set in the
    main process before each pass (the batch sampler is iterated there, never in workers)."""

    def __init__(self):
        self.batches: List[list] = []

    def __iter__(self):
        return iter(self.batches)

    def __len__(self) -> int:
        return len(self.batches)


class SpeechData(BatchSource):
    """Map-style: a :class:`SpeechDataset` and a :class:`DynamicBatchSampler` (``sampler``)."""

    def __init__(self, dataset: SpeechDataset, sampler: DynamicBatchSampler, cfg: DataConfig,
                 seed: int, left_out: int):
        self.sampler, self._plan = sampler, _Plan()
        super().__init__(_data_loader(cfg, seed, dataset, batch_sampler=self._plan,
                                      collate_fn=partial(collate,
                                                         num_mel_bins=dataset.build.num_mel_bins),
                                      persistent_workers=cfg.num_workers > 0), left_out)

    def num_batches(self, epoch: int) -> int:
        return self.sampler.num_batches(epoch)

    def _iterate(self, epoch: int, start: int) -> Iterator[Batch]:
        self._plan.batches = [[(epoch, i) for i in b] for b in self.sampler.batches(epoch)[start:]]
        return self._loaded()


def _as_is(x):
    return x


class ShardData(BatchSource):
    """Shards mode (:mod:`chunkformer.data.shard_stream`): a :class:`ShardStream`, batches put
    back into the plan's order. Workers are started per pass (they must see the pass's range)."""

    def __init__(self, stream: ShardStream, cfg: DataConfig, seed: int, uneven: str,
                 left_out: int):
        self.stream, self.plan, self.uneven = stream, stream.plan, uneven
        super().__init__(_data_loader(cfg, seed, stream, batch_size=None, collate_fn=_as_is,
                                      persistent_workers=False), left_out)

    def num_batches(self, epoch: int) -> int:
        return self.plan.num_batches(epoch, self.uneven)

    def _iterate(self, epoch: int, start: int) -> Iterator[Batch]:
        order, total = self.plan.rank_order(epoch, self.stream.rank), self.num_batches(epoch)
        wanted = order[start:total]
        ranges: Dict[int, tuple] = {}
        for worker, j in wanted:
            lo, hi = ranges.get(worker, (j, j))
            ranges[worker] = (min(lo, j), max(hi, j + 1))
        self.stream.epoch, self.stream.ranges = epoch, ranges
        pending, position = {}, 0
        for tag, batch in self._loaded():
            pending[tag] = batch
            while position < len(wanted) and wanted[position] in pending:
                yield pending.pop(wanted[position])
                position += 1
        for _ in range(total - max(start, len(order))):  # evaluation: pad the shorter ranks
            yield collate([], self.stream.build.num_mel_bins)


def _ignore_stop_signals(worker_id: int):
    """DataLoader workers leave SIGUSR1 to the trainer: SLURM's warning before a time limit
    (``--signal=USR1@120``) reaches every process of the job and must not kill them before the
    trainer has written its checkpoint. SIGTERM keeps its default: the loader itself ends its
    workers with it."""
    signal.signal(signal.SIGUSR1, signal.SIG_IGN)


def _data_loader(cfg: DataConfig, seed: int, dataset, **kwargs) -> torch.utils.data.DataLoader:
    workers = cfg.num_workers
    return torch.utils.data.DataLoader(
        dataset, num_workers=workers, pin_memory=cfg.pin_memory,
        prefetch_factor=cfg.prefetch_factor if workers > 0 else None,
        worker_init_fn=_ignore_stop_signals if workers > 0 else None,
        # Items draw nothing from global RNGs; this only fixes the workers' base seeds.
        generator=torch.Generator().manual_seed(seed), **kwargs)


def _within(cfg: DataConfig, seconds: float) -> bool:
    high = math.inf if cfg.max_duration is None else cfg.max_duration
    return cfg.min_duration <= seconds <= high


def _log_left_out(left_out: int, total: int, cfg: DataConfig):
    if left_out:
        logger.warning("%d of %d utterances outside data.min_duration / max_duration [%s, %s] "
                       "s left out", left_out, total, cfg.min_duration, cfg.max_duration)


def build_data(source, tokenizer, conf: dict, seed: int, rank: int = 0, world_size: int = 1,
               train: bool = True, feats_scp=None, label_fields=None) -> BatchSource:
    """Rows or a shard list → the :class:`BatchSource` of this rank.

    Args:
        source: :class:`~chunkformer.data.manifest.Utterance` rows, each with a ``duration``
            (map-style :class:`SpeechData`), or the path of a ``shards.list``
            (:class:`ShardData`, see :mod:`chunkformer.data.shard_stream`).
        tokenizer: has ``encode(text) -> (ids, unknown_chars)``; None for audio only.
        conf: the ``data:`` section (module docstring).
        seed: seeds shuffling and every item's augmentation.
        rank, world_size: this process among the data-parallel ones.
        train: shuffle, augment and dither (True), or read as at inference, sorted (False).
        feats_scp: precomputed fbank (``dataset.write_feats_scp``) to read instead of the
            rows' audio (not with shards).
        label_fields: {field: {class: id}} of the classification heads (``ExampleBuilder``).
    """
    cfg = DataConfig.from_dict(conf)
    long_form = None if cfg.long_form is None else LongFormConfig.from_dict(cfg.long_form)
    if not train:
        long_form = None
    sharded = isinstance(source, (str, os.PathLike))
    if sharded and feats_scp is not None:
        raise ValueError("shards carry audio: precomputed features go with manifests")
    wave, feats, stretch = _transforms(cfg, train, waveform=feats_scp is None)
    dither = cfg.fbank.dither if train and feats_scp is None else 0.0
    build = ExampleBuilder(tokenizer, wave, feats, cfg.fbank.num_mel_bins, dither, feats_scp,
                           label_fields, long_form)
    uneven = "drop" if train else "empty"
    if sharded:
        shards = read_shard_list(source)
        timings = index_shards(shards)
        frames = [np.array([seconds_to_frames(d, stretch) if _within(cfg, d) else -1
                            for d in timing.durations], dtype=np.int64)
                  for timing in timings]
        left_out = sum(int((f < 0).sum()) for f in frames)
        _log_left_out(left_out, sum(map(len, frames)), cfg)
        plan = ShardPlan(shards, frames, cfg.max_frames_in_batch, cfg.sort_window, seed,
                         world_size, cfg.num_workers, long_form, timings)
        return ShardData(ShardStream(plan, build, rank, seed), cfg, seed, uneven, left_out)
    rows = list(source)
    kept = [r for r in rows if r.duration is None or _within(cfg, r.duration)]
    _log_left_out(len(rows) - len(kept), len(rows), cfg)
    if not kept:
        raise ValueError(f"no utterances to batch ({len(rows)} rows before the duration "
                         "limits)")
    planner = None if long_form is None else LongFormPlanner(long_form, Timing.of_rows(kept))
    sampler = DynamicBatchSampler(utterance_frames(kept, stretch), cfg.max_frames_in_batch, seed,
                                  rank, world_size, shuffle=train, sort_window=cfg.sort_window,
                                  uneven=uneven, long_form=planner)
    return SpeechData(SpeechDataset(kept, build, seed), sampler, cfg, seed,
                      len(rows) - len(kept))
