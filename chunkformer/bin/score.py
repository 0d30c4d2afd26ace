"""Score hypotheses against references: WER and CER, and the per-utterance error report.

    python -m chunkformer.bin.score --hyp exp/decode_test/text \
        --ref data/test/telephone.list --report exp/decode_test/telephone_errors.tsv

``--hyp`` is a Kaldi ``text`` file (what ``recognize`` writes); ``--ref`` is any list with
transcripts (jsonl ``data.list``, Kaldi data dir, TSV/CSV, JSON array) or a Kaldi ``text``
file. Only utterances in both are scored, so one decode of a whole test set can be scored on
any subset of it (per channel, speaker or condition) without decoding again. Both texts go
through the normaliser used for training targets. Prints the same line as ``recognize``.
"""
import argparse
import sys

from chunkformer.bin.common import tool_main, user_error_message
from chunkformer.data.manifest import ManifestError, read_manifest, read_text
from chunkformer.decoding.metrics import score


def get_parser():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--hyp", required=True, help="Kaldi text file of hypotheses")
    p.add_argument("--ref", required=True, help="list with transcripts, or a Kaldi text file")
    p.add_argument("--report", default=None, help="per-utterance errors TSV to write")
    return p


@tool_main
def main(argv=None):
    args = get_parser().parse_args(argv)
    try:
        hyps = read_text(args.hyp)
    except (ManifestError, FileNotFoundError) as e:
        sys.exit(f"error: {user_error_message(e)}")
    refs = {r.key: r.text for r in read_manifest(args.ref) if r.text is not None}
    summary = score(hyps, refs, args.report)
    if summary is None:
        sys.exit(f"error: no utterance of {args.hyp} has a reference in {args.ref}")
    print(summary)


if __name__ == "__main__":
    main()
