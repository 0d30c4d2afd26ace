"""Global CMVN statistics of a list: sums and sums of squares of the fbank features, computed
exactly as at inference (``load_audio`` int16 scale, ``compute_fbank`` with dither 0).

    python -m chunkformer.bin.compute_cmvn --data data/train/data.list \
        --output data/train/global_cmvn --num_workers 2 --max_utts 20000

Writes the JSON the released folders use (``chunkformer.encoder.cmvn.write_cmvn``). With
``--max_utts`` a seeded random subset is used (the statistics settle after a few thousand
utterances). Unreadable audio is skipped and counted.
"""
import argparse
import random
import sys
from typing import List, Tuple

import numpy as np
import torch
from tqdm import tqdm

from chunkformer.bin.common import tool_main, worker_pool
from chunkformer.data.audio import AudioError, load_row
from chunkformer.data.features import compute_fbank
from chunkformer.data.manifest import Utterance, read_manifest
from chunkformer.data.skips import SkipLog
from chunkformer.encoder.cmvn import write_cmvn

CHUNK = 16  # utterances per task handed to a worker process


def get_parser():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--data", required=True, help="any supported list (data.list after "
                                                 "prepare_data)")
    p.add_argument("--audio_root", default=None)
    p.add_argument("--output", required=True, help="global_cmvn JSON to write")
    p.add_argument("--num_mel_bins", type=int, default=80)
    p.add_argument("--num_workers", type=int, default=1, help="processes (1: this one)")
    p.add_argument("--max_utts", type=int, default=0, help="random subset size (0: all)")
    p.add_argument("--seed", type=int, default=0)
    return p


class Stats:
    """Running float64 sums over fbank frames: ``sums`` (F,), ``squares`` (F,), ``frames``."""

    def __init__(self, num_mel_bins: int):
        self.sums = np.zeros(num_mel_bins)
        self.squares = np.zeros(num_mel_bins)
        self.frames = 0
        self.skipped: List[Tuple[Utterance, str]] = []

    def add_features(self, feats: torch.Tensor) -> None:
        """Add (T, F) features."""
        feats = feats.double().numpy()
        self.sums += feats.sum(axis=0)
        self.squares += (feats * feats).sum(axis=0)
        self.frames += feats.shape[0]

    def merge(self, other: "Stats") -> None:
        self.sums += other.sums
        self.squares += other.squares
        self.frames += other.frames
        self.skipped += other.skipped


def chunk_stats(rows: List[Utterance], num_mel_bins: int) -> Stats:
    """Statistics of some rows; unreadable audio goes to ``skipped``."""
    stats = Stats(num_mel_bins)
    for row in rows:
        try:
            wave = load_row(row)
        except AudioError as e:
            stats.skipped.append((row, str(e)))
            continue
        stats.add_features(compute_fbank(wave, num_mel_bins=num_mel_bins, dither=0.0))
    return stats


def _chunk_stats(args) -> Stats:
    return chunk_stats(*args)


def compute_stats(rows: List[Utterance], num_mel_bins: int = 80, num_workers: int = 1,
                  progress: bool = True) -> Stats:
    """Statistics of all rows, over ``num_workers`` processes.

    Rows go to workers in fixed chunks whose sums are merged in list order, so the result is
    the same, bit for bit, whatever the worker count.
    """
    tasks = [(rows[i:i + CHUNK], num_mel_bins) for i in range(0, len(rows), CHUNK)]
    total = Stats(num_mel_bins)
    with worker_pool(num_workers) as pool, tqdm(total=len(rows), unit="utt", desc="cmvn",
                                          disable=not progress, file=sys.stderr) as bar:
        results = pool.imap(_chunk_stats, tasks) if pool else map(_chunk_stats, tasks)
        for (chunk, _), stats in zip(tasks, results):
            total.merge(stats)
            bar.update(len(chunk))
    return total


def subsample(rows: List[Utterance], max_utts: int, seed: int) -> List[Utterance]:
    """A seeded random subset of ``max_utts`` rows in list order (all when 0 or enough)."""
    if max_utts <= 0 or max_utts >= len(rows):
        return rows
    picked = sorted(random.Random(seed).sample(range(len(rows)), max_utts))
    return [rows[i] for i in picked]


@tool_main
def main(argv=None):
    args = get_parser().parse_args(argv)
    rows = read_manifest(args.data, args.audio_root)
    rows = subsample(rows, args.max_utts, args.seed)
    stats = compute_stats(rows, args.num_mel_bins, args.num_workers)
    skips = SkipLog(stats.skipped)
    if stats.frames == 0:
        sys.exit(f"error: no frames from {len(rows)} utterances ({skips.summary()})")
    write_cmvn(args.output, stats.sums, stats.squares, stats.frames)
    print(f"{stats.frames} frames from {len(rows) - len(skips)} utterances, "
          f"{skips.summary()} → {args.output}")


if __name__ == "__main__":
    main()
