"""Tune the LM weight and word bonus of shallow fusion on a dev set (grid search, CER).

    python -m chunkformer.bin.tune_decoding --model_dir exp/default/final \
        --data data/dev/data.list --lm exp/lm/lm.arpa --output_dir exp/lm/tune \
        --lm_weights 0.1,0.2,0.3,0.5,0.8 --word_bonuses 0,0.5,1,2,3

The encoder runs once per utterance (masked batches, the given contexts); each grid point
then re-runs only the CTC prefix beam search, exactly as ``recognize --mode ctc_prefix_beam``
(``--hotwords`` too, fixed) would. Writes ``<output_dir>/tuning.tsv`` (lm_weight, word_bonus,
CER, WER, search seconds; the first row is the search without LM) and prints the best pair as
``recognize`` options.
"""
import argparse
import sys
import time
from pathlib import Path

import torch
from tqdm import tqdm

from chunkformer.bin.common import tool_main, user_error_message
from chunkformer.data.manifest import ManifestError, read_manifest
from chunkformer.data.text import normalize_text
from chunkformer.decoding.batch import budget_groups
from chunkformer.decoding.bias import make_bias
from chunkformer.decoding.metrics import ErrorTally, error_counts
from chunkformer.decoding.spans import SpanSearch
from chunkformer.lm.arpa import NgramLM
from chunkformer.model import ChunkFormerModel


def floats(text: str):
    try:
        return [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}")


def get_parser():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--model_dir", required=True)
    p.add_argument("--data", required=True, help="dev list with transcripts")
    p.add_argument("--lm", required=True, help="ARPA file")
    p.add_argument("--output_dir", required=True)
    p.add_argument("--lm_weights", type=floats, default=floats("0.1,0.2,0.3,0.5,0.8"))
    p.add_argument("--word_bonuses", type=floats, default=floats("0,0.5,1,2,3"))
    p.add_argument("--hotwords", default=None, help="hotwords file, kept fixed")
    p.add_argument("--beam_size", type=int, default=10)
    p.add_argument("--chunk_size", type=int, default=0, help="≤ 0: full context")
    p.add_argument("--left_context_size", type=int, default=0)
    p.add_argument("--right_context_size", type=int, default=0)
    p.add_argument("--total_batch_duration", type=float, default=600)
    p.add_argument("--num_threads", type=int, default=0)
    return p


def encode(model, items, args):
    """Encoder outputs [(T', D)] of every item, in masked batches."""
    feats = [model.features(i.audio, start=i.start, end=i.end, channel=i.channel)
             for i in tqdm(items, desc="features", unit="utt", file=sys.stderr)]
    chunk = args.chunk_size if args.chunk_size > 0 else None
    encs = []
    with torch.no_grad():
        for group in budget_groups([f.size(0) for f in feats], args.total_batch_duration):
            encs += model.encoder.forward_list([feats[i] for i in group], chunk,
                                               args.left_context_size,
                                               args.right_context_size)
    return encs


def evaluate(model, encs, refs, beam_size, bias):
    """(CER, WER, seconds) of the beam search with ``bias`` over the encoder outputs."""
    chars, words = ErrorTally(), ErrorTally()
    start = time.perf_counter()
    for enc, ref in zip(encs, refs):
        spans = SpanSearch(model, "ctc_prefix_beam", beam_size, bias=bias)
        spans.add(enc)
        hyp = spans.finish().text
        chars.add(*error_counts(ref, hyp, "char"))
        words.add(*error_counts(ref, hyp, "word"))
    return chars.rate, words.rate, time.perf_counter() - start


@tool_main
def main(argv=None) -> int:
    args = get_parser().parse_args(argv)
    if args.num_threads > 0:
        torch.set_num_threads(args.num_threads)
    try:
        items = [i for i in read_manifest(args.data) if i.text is not None]
        model = ChunkFormerModel.from_pretrained(args.model_dir)
        lm = NgramLM.load(args.lm)
        make_bias(model.vocab, args.hotwords, lm)  # check the hotwords before the long part
    except (ManifestError, ValueError, FileNotFoundError) as e:
        sys.exit(f"error: {user_error_message(e)}")
    if not items:
        sys.exit(f"error: {args.data}: no utterance with a transcript")
    refs = [normalize_text(i.text) for i in items]
    encs = encode(model, items, args)
    grid = [(None, None)] + [(a, b) for a in args.lm_weights for b in args.word_bonuses]
    rows = []
    hot = make_bias(model.vocab, args.hotwords) if args.hotwords else None
    for weight, bonus in tqdm(grid, desc="grid", file=sys.stderr):
        bias = hot if weight is None else make_bias(model.vocab, args.hotwords, lm, weight,
                                                    bonus)
        rows.append((weight, bonus, *evaluate(model, encs, refs, args.beam_size, bias)))
    out = Path(args.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "tuning.tsv", "w", encoding="utf-8") as f:
        f.write("lm_weight\tword_bonus\tcer\twer\tsearch_seconds\n")
        for weight, bonus, cer, wer, secs in rows:
            f.write(f"{'-' if weight is None else weight}\t{'-' if bonus is None else bonus}"
                    f"\t{100 * cer:.2f}\t{100 * wer:.2f}\t{secs:.2f}\n")
    base = rows[0]
    best = min(rows[1:], key=lambda r: (r[2], r[3]))
    print(f"{len(items)} utterances; without LM: CER {100 * base[2]:.2f} % WER "
          f"{100 * base[3]:.2f} % ({base[4]:.2f} s search)")
    print(f"best: --lm_weight {best[0]} --word_bonus {best[1]}: CER {100 * best[2]:.2f} % "
          f"WER {100 * best[3]:.2f} % ({best[4]:.2f} s search) → {out / 'tuning.tsv'}")
    return 0


if __name__ == "__main__":
    main()
