"""Precompute the fbank of a list into Kaldi ark/scp (the recipes' feature-extraction stage).

    python -m chunkformer.bin.compute_fbank --data data/train/data.list \
        --output_dir data/train/fbank --num_workers 2

Features are exactly those of inference (``load_audio`` int16 scale, ``compute_fbank`` with
dither 0), so training on them (``data.train_feats_scp``) sees what decoding sees; the data
loader then only applies SpecAugment and skips reading and transforming audio every epoch.
Waveform augmentation (speed perturbation, telephone channel, noise) needs the audio, so a
configuration with it trains from the audio instead. The list is cut into pieces of
``CHUNK`` utterances, each written to its own ``feats_<i>.ark`` by one of the worker processes;
``feats.scp`` lists every utterance in list order. Unreadable audio gets no entry and is listed
with the reason in ``<output_dir>/skipped.tsv`` (training then skips it as "missing features").
"""
import argparse
import sys
from pathlib import Path

from tqdm import tqdm

from chunkformer.bin.common import add_key_mode_option, tool_main, worker_pool
from chunkformer.data.dataset import write_feats_scp
from chunkformer.data.manifest import read_manifest
from chunkformer.data.skips import SkipLog

FEATS_SCP = "feats.scp"
CHUNK = 250  # utterances per ark


def get_parser():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--data", required=True, help="any supported list")
    p.add_argument("--audio_root", default=None)
    p.add_argument("--output_dir", required=True, help="folder for feats.scp and the arks")
    p.add_argument("--num_mel_bins", type=int, default=80)
    p.add_argument("--num_workers", type=int, default=1, help="processes (1: this one)")
    add_key_mode_option(p, "skipped.tsv")
    return p


def _write_part(args):
    rows, prefix, num_mel_bins = args
    return write_feats_scp(rows, prefix, num_mel_bins)


def compute_fbank_scp(rows, output_dir, num_mel_bins: int = 80, num_workers: int = 1,
                      progress: bool = True):
    """Write the rows' fbank as ``feats_<i>.ark`` parts and one ``feats.scp`` in list order.

    Returns (scp path, SkipLog of unreadable rows). The parts are fixed slices of the list,
    so the arks and the scp do not depend on the worker count or on scheduling.
    """
    out = Path(output_dir).resolve()  # absolute ark paths: the scp works from any folder
    out.mkdir(parents=True, exist_ok=True)
    tasks = [(rows[i:i + CHUNK], out / f"feats_{i // CHUNK}", num_mel_bins)
             for i in range(0, len(rows), CHUNK)]
    skips, scp = SkipLog(), out / FEATS_SCP
    with worker_pool(min(num_workers, len(tasks))) as pool, \
            tqdm(total=len(rows), unit="utt", desc="fbank", disable=not progress,
                 file=sys.stderr) as bar, open(f"{scp}.tmp", "w", encoding="utf-8") as f:
        results = pool.imap(_write_part, tasks) if pool else map(_write_part, tasks)
        for (part_rows, _, _), (part_scp, skipped) in zip(tasks, results):
            f.write(Path(part_scp).read_text(encoding="utf-8"))
            Path(part_scp).unlink()
            for s in skipped:
                skips.add(s, s.reason)
            bar.update(len(part_rows))
    Path(f"{scp}.tmp").replace(scp)  # a finished scp means every ark is complete
    return scp, skips


@tool_main
def main(argv=None):
    args = get_parser().parse_args(argv)
    rows = read_manifest(args.data, args.audio_root)
    scp, skips = compute_fbank_scp(rows, args.output_dir, args.num_mel_bins, args.num_workers)
    skips.write(Path(args.output_dir) / "skipped.tsv", args.key_mode)
    print(f"fbank of {len(rows) - len(skips)} utterances, {skips.summary()} → {scp}")
    if len(skips) == len(rows):
        sys.exit(1)


if __name__ == "__main__":
    main()
