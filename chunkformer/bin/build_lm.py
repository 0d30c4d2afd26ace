"""Build a word n-gram language model (interpolated modified Kneser-Ney) and write ARPA.

    python -m chunkformer.bin.build_lm --text data/train/data.list extra_domain.txt \
        --order 3 --output exp/lm/lm.arpa

Each ``--text`` file is JSON lines (a data list: the ``txt`` / ``text`` / ``sentence`` field
of each row), or plain text with one sentence a line (``--with_keys``: Kaldi ``text``, the
first field of each line is a key). Sentences are normalised exactly as training targets are
(``prepare_data``: numbers written out with ``--numbers`` / ``--region`` / ``--four``,
lowercase, punctuation removed), so the LM's words are the words the model spells; the same
sentence given twice counts twice. ``.gz`` outputs are gzip-compressed. Decode with
``recognize --mode ctc_prefix_beam --lm <output>``; ``tune_decoding`` finds the weights.
"""
import argparse
import json
import sys
import time
from pathlib import Path

from chunkformer.bin.common import tool_main
from chunkformer.data.numbers import spoken_text
from chunkformer.lm.arpa import NgramLM, write_arpa
from chunkformer.lm.kneser_ney import count_ngrams, estimate

TEXT_FIELDS = ("txt", "text", "sentence")


def get_parser():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--text", nargs="+", required=True,
                   help="data lists (jsonl) and/or plain text files, one sentence a line")
    p.add_argument("--with_keys", action="store_true",
                   help="plain text files are Kaldi 'text' (first field a key)")
    p.add_argument("--order", type=int, default=3, help="n-gram order")
    p.add_argument("--output", required=True, help="ARPA file to write (.arpa or .arpa.gz)")
    p.add_argument("--numbers", default="spoken", choices=("spoken", "keep"))
    p.add_argument("--region", default="north", choices=("north", "south"))
    p.add_argument("--four", default="tư", choices=("tư", "bốn"))
    return p


def read_sentences(path, with_keys: bool = False):
    """Yield the raw sentences of one file; ValueError names file:line on a bad row."""
    with open(path, encoding="utf-8") as f:
        lines = iter(enumerate(f, start=1))
        is_json = None
        for number, line in lines:
            line = line.strip()
            if not line:
                continue
            if is_json is None:
                is_json = line.startswith("{")
            if not is_json:
                yield line.split(maxsplit=1)[1] if with_keys and " " in line else \
                    ("" if with_keys else line)
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise ValueError(f"{path}:{number}: not JSON ({e.msg})") from None
            text = next((row[k] for k in TEXT_FIELDS if isinstance(row, dict) and k in row),
                        None)
            if not isinstance(text, str):
                raise ValueError(f"{path}:{number}: no text field ({', '.join(TEXT_FIELDS)})")
            yield text


@tool_main
def main(argv=None) -> int:
    args = get_parser().parse_args(argv)
    if args.order < 1:
        sys.exit(f"error: --order must be ≥ 1, got {args.order}")
    start = time.perf_counter()
    sentences = []
    try:
        for path in args.text:
            for raw in read_sentences(path, args.with_keys):
                words = spoken_text(raw, args.numbers, args.region, args.four).split()
                if words:
                    sentences.append(words)
    except ValueError as e:
        sys.exit(f"error: {e}")
    if not sentences:
        sys.exit(f"error: no sentences in {' '.join(args.text)}")
    result = estimate(count_ngrams(sentences, args.order))
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    write_arpa(result.entries, args.output)
    counts = NgramLM(result.entries).counts()
    print(f"{len(sentences)} sentences, {sum(map(len, sentences))} words, vocabulary "
          f"{counts[1] - 3} (+ <s> </s> <unk>); n-grams "
          + ", ".join(f"{n}: {c}" for n, c in counts.items()))
    print("discounts " + "; ".join(f"{n}-grams {d[0]:.3f} {d[1]:.3f} {d[2]:.3f}"
                                   for n, d in result.discounts.items()))
    if result.fallback_orders:
        print(f"warning: too little text to estimate the discounts of order(s) "
              f"{', '.join(map(str, result.fallback_orders))}; used 0.5 / 1.0 / 1.5")
    print(f"wrote {args.output} in {time.perf_counter() - start:.1f} s")
    return 0


if __name__ == "__main__":
    main()
