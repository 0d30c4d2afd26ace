"""How much of everyday banking talk the synthetic corpus's training vocabulary covers.

    python bench/vocabulary_coverage.py [--train data/default/train/data.list]

Prints the share of words (tokens and distinct) of ``bench/banking_sentences_vi.txt`` (30
call-center sentences written apart from the corpus's templates) never heard in training, and
the same for the test set's sentences from held-out templates. Without ``--train`` the
vocabulary is the corpus's :func:`~chunkformer.data.synthetic.train_vocabulary` (a fixed draw
of train sentences, no audio needed).
"""
import argparse
from pathlib import Path

from chunkformer.data.manifest import read_manifest
from chunkformer.data.synthetic import train_vocabulary


def unheard(sentences, vocabulary) -> str:
    words = [w for s in sentences for w in s.split()]
    missing = [w for w in words if w not in vocabulary]
    distinct = {w for w in words}
    return (f"{100 * len(missing) / max(len(words), 1):.1f}% of {len(words)} words, "
            f"{len(distinct - vocabulary)} of {len(distinct)} distinct words never heard")


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--train", default=None, help="train list (default: the corpus's draw)")
    p.add_argument("--test", default=None, help="test list with unseen_template labels")
    args = p.parse_args()
    if args.train:
        vocabulary = {w for r in read_manifest(args.train) for w in (r.text or "").split()}
    else:
        vocabulary = set(train_vocabulary())
    print(f"training vocabulary: {len(vocabulary)} words")
    here = Path(__file__).parent / "banking_sentences_vi.txt"
    sentences = [s.strip() for s in here.read_text(encoding="utf-8").splitlines() if s.strip()]
    print(f"everyday banking sentences: {unheard(sentences, vocabulary)}")
    if args.test:
        held_out = [r.text for r in read_manifest(args.test) if r.labels.get("unseen_template")]
        print(f"test sentences from held-out templates: {unheard(held_out, vocabulary)}")


if __name__ == "__main__":
    main()
