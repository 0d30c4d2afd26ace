"""Build the token vocabulary of a training list: characters, a sentencepiece BPE model, or a
released model's vocab.txt reused for fine-tuning; report what it cannot encode.

    python -m chunkformer.bin.build_vocab --data data/train/data.list --kind bpe \
        --vocab_size 1024 --output_dir data/lang_bpe
    python -m chunkformer.bin.build_vocab --data data/train/data.list --kind released \
        --model_dir chunkformer-ctc-large-vie --output_dir data/lang_released

Writes ``<output_dir>/vocab.txt`` in the released layout (and ``bpe.model`` for BPE) plus
``<output_dir>/oov.tsv``: every character of the transcripts the vocabulary cannot encode, with
its code point, Unicode name and count (``▁`` there means a word start no piece can begin).
Transcripts are normalised with ``chunkformer.data.text.normalize_text`` first.
"""
import argparse
import sys
import unicodedata
from pathlib import Path

from chunkformer.bin.common import tool_main, user_error_message
from chunkformer.data.manifest import ManifestError, read_manifest
from chunkformer.data.tokenizer import (
    BpeTokenizer, CharTokenizer, Coverage, load_tokenizer, measure_coverage)

SHOWN = 20  # unknown characters printed; oov.tsv has them all


def get_parser():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--data", required=True, nargs="+", help="training list(s) with transcripts")
    p.add_argument("--kind", required=True, choices=("char", "bpe", "released"))
    p.add_argument("--vocab_size", type=int, default=None,
                   help="bpe: sentencepiece pieces incl. <unk> (vocab.txt gets 2 more)")
    p.add_argument("--model_dir", default=None, help="released: the model folder (or vocab.txt)")
    p.add_argument("--output_dir", required=True)
    return p


def build(kind: str, texts, vocab_size=None, model_dir=None):
    """The tokenizer of ``kind`` for these texts (``released``: loaded from ``model_dir``)."""
    if kind == "char":
        return CharTokenizer.build(texts)
    if kind == "bpe":
        if not vocab_size or vocab_size < 2:
            raise ValueError("--kind bpe needs --vocab_size ≥ 2")
        return BpeTokenizer.train(texts, vocab_size)
    if model_dir is None:
        raise ValueError("--kind released needs --model_dir")
    return load_tokenizer(model_dir)


def char_name(c: str) -> str:
    return unicodedata.name(c, "?")


def write_oov(path: Path, coverage: Coverage) -> None:
    """``<char>\\tU+XXXX\\t<Unicode name>\\t<count>`` per unknown character, most frequent first."""
    with open(path, "w", encoding="utf-8") as f:
        for c, n in coverage.unknown.most_common():
            f.write(f"{c}\tU+{ord(c):04X}\t{char_name(c)}\t{n}\n")


@tool_main
def main(argv=None):
    args = get_parser().parse_args(argv)
    try:
        rows = [row for data in args.data for row in read_manifest(data)]
    except ManifestError as e:
        sys.exit(f"error: {e}")
    texts = [row.text for row in rows if row.text is not None]
    if not texts:
        sys.exit(f"error: no transcripts in {' '.join(args.data)}")
    try:
        tokenizer = build(args.kind, texts, args.vocab_size, args.model_dir)
    except (ValueError, FileNotFoundError) as e:
        sys.exit(f"error: {user_error_message(e)}")
    out = Path(args.output_dir)
    tokenizer.save(out)
    coverage = measure_coverage(tokenizer, texts)
    write_oov(out / "oov.tsv", coverage)
    print(f"{args.kind}: {len(tokenizer.vocab)} tokens → {out / 'vocab.txt'}; "
          f"{len(texts)} transcripts ({len(rows) - len(texts)} rows without one), "
          f"coverage {100 * coverage.ratio:.2f}% of characters, "
          f"{coverage.failed} transcripts with unknown characters")
    for c, n in coverage.unknown.most_common(SHOWN):
        print(f"  unknown {c!r} U+{ord(c):04X} {char_name(c)}: {n}")
    if len(coverage.unknown) > SHOWN:
        print(f"  ... {len(coverage.unknown) - SHOWN} more in {out / 'oov.tsv'}")


if __name__ == "__main__":
    main()
