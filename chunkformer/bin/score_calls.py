"""Score whole-call transcripts against the calls' turns: CER / WER per call, words inserted in
the gaps between turns, and the share of words on their speaker's channel (two-channel
decoding).

    python -m chunkformer.bin.recognize --model_dir exp/final --data calls_stereo.list \
        --channels split --output_dir exp/decode_calls
    python -m chunkformer.bin.score_calls --hyp exp/decode_calls/result.jsonl \
        --turns data/test_calls/turns_stereo.list --json exp/decode_calls/calls_score.json

``--turns`` is any list with one row per turn: ``group`` (the call's key in ``--hyp``),
``start`` / ``end`` (seconds in the call) and transcript, and ``channel`` for attribution. See
:mod:`chunkformer.decoding.call_scoring` for the definitions.
"""
import argparse
import json

from chunkformer.bin.common import tool_main
from chunkformer.decoding.call_scoring import score_calls, turns_by_call
from chunkformer.data.manifest import ManifestError, read_manifest


def get_parser():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--hyp", required=True, help="result.jsonl of recognize (one row per call)")
    p.add_argument("--turns", required=True, help="list of the calls' turns")
    p.add_argument("--margin", type=float, default=0.2,
                   help="seconds around a turn where recognised words are not gap insertions")
    p.add_argument("--json", default=None, help="also write the numbers to this JSON file")
    return p


def read_results(path) -> dict:
    """result.jsonl → {key: row}, naming the line of a malformed row."""
    results = {}
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                results[row["key"]] = row
            except (json.JSONDecodeError, KeyError, TypeError) as e:
                raise ManifestError(f"{path}:{n}: not a recognize result row ({e})") from None
    return results


@tool_main
def main(argv=None):
    args = get_parser().parse_args(argv)
    scores = score_calls(read_results(args.hyp), turns_by_call(read_manifest(args.turns)),
                         args.margin)
    print(scores.summary())
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(scores.as_dict(), f, indent=1)


if __name__ == "__main__":
    main()
