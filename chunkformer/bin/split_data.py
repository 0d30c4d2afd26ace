"""Split a list into train and dev by call or by speaker, seeded, so that no call (or agent)
has utterances on both sides: a random per-utterance split leaks them and flatters dev.

    python -m chunkformer.bin.split_data --data data/all/data.list --by group \
        --dev_fraction 0.05 --seed 0 --train data/train/data.list --dev data/dev/data.list

``--by group`` uses each row's ``group`` (call / recording id; the recording when the list has
none), ``--by speaker`` its ``speaker``. Whole groups, in a seeded random order, go to dev until
it holds ``--dev_fraction`` of the audio (of the utterances when some durations are unknown).
Both lists keep the input order.
"""
import argparse
import random
import sys
from collections import defaultdict
from typing import List, Tuple

from chunkformer.bin.common import tool_main
from chunkformer.data.manifest import ManifestError, Utterance, read_manifest, write_manifest


def get_parser():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--data", required=True, help="any supported list")
    p.add_argument("--audio_root", default=None)
    p.add_argument("--by", default="group", choices=("group", "speaker"))
    p.add_argument("--dev_fraction", type=float, default=0.05)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--train", required=True, help="jsonl list to write")
    p.add_argument("--dev", required=True, help="jsonl list to write")
    return p


def split_by_group(rows: List[Utterance], dev_fraction: float, by: str = "group",
                   seed: int = 0) -> Tuple[List[Utterance], List[Utterance]]:
    """→ (train rows, dev rows); every value of ``row.<by>`` lies on one side only.

    Raises:
        ValueError: a row without a ``by`` value, a fraction outside (0, 1), or too few groups
            to give both sides at least one.
    """
    if not 0 < dev_fraction < 1:
        raise ValueError(f"dev_fraction {dev_fraction} is not in (0, 1)")
    groups = defaultdict(list)
    for row in rows:
        value = getattr(row, by)
        if value is None:
            raise ValueError(f"utterance '{row.key}' has no {by}; split --by group instead")
        groups[value].append(row)
    if len(groups) < 2:
        raise ValueError(f"{len(groups)} {by} value(s): cannot give train and dev one each")
    timed = all(row.duration is not None for row in rows)
    size = {g: sum(r.duration for r in members) if timed else len(members)
            for g, members in groups.items()}
    order = sorted(groups)
    random.Random(seed).shuffle(order)
    target, dev, filled = dev_fraction * sum(size.values()), set(), 0.0
    for g in order[:-1]:  # the last group always stays in train
        if filled >= target:
            break
        dev.add(g)
        filled += size[g]
    return ([r for r in rows if getattr(r, by) not in dev],
            [r for r in rows if getattr(r, by) in dev])


def _describe(name: str, rows: List[Utterance], by: str) -> str:
    hours = sum(r.duration or 0.0 for r in rows) / 3600
    return (f"{name}: {len(rows)} utterances, {len({getattr(r, by) for r in rows})} "
            f"{by}s, {hours:.2f} h")


@tool_main
def main(argv=None):
    args = get_parser().parse_args(argv)
    try:
        rows = read_manifest(args.data, args.audio_root)
        train, dev = split_by_group(rows, args.dev_fraction, args.by, args.seed)
    except (ManifestError, ValueError) as e:
        sys.exit(f"error: {e}")
    write_manifest(args.train, train)
    write_manifest(args.dev, dev)
    print(f"{_describe('train', train, args.by)} → {args.train}")
    print(f"{_describe('dev', dev, args.by)} → {args.dev}")


if __name__ == "__main__":
    main()
