"""Pack a list into tar shards (audio + metadata, ``chunkformer.data.shards``) and a
``shards.list``, so training streams a few large files instead of millions of small ones.

    python -m chunkformer.bin.make_shards --data data/train/data.list \
        --output_dir data/train/shards --shard_size 1000 --shuffle --num_workers 4

``--data`` is any supported list (best: the ``data.list`` of ``prepare_data``, whose
transcripts are normalised). ``--shuffle`` mixes the rows (seeded) before packing, so each shard
holds a bit of every corpus and speaker. Unreadable audio is skipped, counted and listed in
``<output_dir>/skipped.tsv``.
"""
import argparse
import random
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from chunkformer.bin.common import add_key_mode_option, tool_main
from chunkformer.data.manifest import read_manifest
from chunkformer.data.shards import SHARD_LIST, write_shards
from chunkformer.data.skips import SkipLog


def get_parser():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--data", required=True, help="any supported list")
    p.add_argument("--audio_root", default=None)
    p.add_argument("--output_dir", required=True)
    p.add_argument("--shard_size", type=int, default=1000, help="utterances per shard")
    p.add_argument("--shuffle", action="store_true", help="seeded shuffle before packing")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--num_workers", type=int, default=4, help="shards packed at once (threads)")
    add_key_mode_option(p, "skipped.tsv")
    return p


@tool_main
def main(argv=None):
    args = get_parser().parse_args(argv)
    rows = read_manifest(args.data, args.audio_root)
    if args.shuffle:
        random.Random(args.seed).shuffle(rows)
    out = Path(args.output_dir)
    try:
        with ThreadPoolExecutor(max(1, args.num_workers)) as pool:
            shards, skipped = write_shards(rows, out, args.shard_size, pool)
    except ValueError as e:
        sys.exit(f"error: {e}")
    skips = SkipLog(skipped)
    skips.write(out / "skipped.tsv", args.key_mode)
    print(f"{len(rows) - len(skips)} utterances in {len(shards)} shards, {skips.summary()} "
          f"→ {out / SHARD_LIST}")
    if len(skips) == len(rows):
        sys.exit(1)


if __name__ == "__main__":
    main()
