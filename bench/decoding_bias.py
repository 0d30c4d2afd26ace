"""Hotwords and LM fusion on the default recipe's model: what they buy and what they cost.

    python bench/decoding_bias.py --model_dir exp/default/final --data_dir data/default

1. Hotwords: a set of utterances that say ``RARE_PHRASES`` (product and branch names whose
   words the corpus says rarely and never together) in carrier sentences, plus test-style
   sentences that say none; recall of the phrases without and with the list, false alarms
   (a listed phrase in the output of an utterance that does not say it), and the test set's
   CER with the list on (it must not rise by more than 0.2 points), for boosts 1 to 4 (2 is
   the default).
2. LM: a 3-gram LM (``build_lm``) from the train transcripts plus in-domain text
   (``domain_text``: template sentences, no audio), weights tuned on dev
   (``tune_decoding``), test CER without and with it; and the search's time per utterance.

Everything decodes in full context with beam 10 (the encoder runs once; only the search is
timed). ``--quick`` checks the script on small sets in ~30 s.
"""
import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import common  # noqa: E402

from chunkformer.bin.build_lm import main as build_lm  # noqa: E402
from chunkformer.data.manifest import read_manifest  # noqa: E402
from chunkformer.data.synthetic import (RARE_PHRASES, domain_text, plan_phrase_set,  # noqa: E402
                                        write_corpus)
from chunkformer.data.text import normalize_text  # noqa: E402
from chunkformer.decoding.bias import make_bias  # noqa: E402
from chunkformer.decoding.metrics import ErrorTally, error_counts  # noqa: E402
from chunkformer.decoding.spans import SpanSearch  # noqa: E402
from chunkformer.lm.arpa import NgramLM  # noqa: E402
from chunkformer.model import ChunkFormerModel  # noqa: E402


def encode(model, items):
    with torch.no_grad():
        return [model.encoder.forward_list([model.features(i.audio)], None, 0, 0)[0]
                for i in items]


def search(model, encs, bias, beam=10):
    """→ (texts, seconds of search)."""
    start, out = time.perf_counter(), []
    for enc in encs:
        spans = SpanSearch(model, "ctc_prefix_beam", beam, bias=bias)
        spans.add(enc)
        out.append(spans.finish().text)
    return out, time.perf_counter() - start


def cer(refs, hyps):
    tally = ErrorTally()
    for r, h in zip(refs, hyps):
        tally.add(*error_counts(normalize_text(r), h, "char"))
    return 100 * tally.rate


def contains(text, phrase):
    return f" {phrase} " in f" {text} "


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model_dir", default="exp/default/final")
    p.add_argument("--data_dir", default="data/default")
    p.add_argument("--num_with", type=int, default=112)
    p.add_argument("--num_without", type=int, default=112)
    p.add_argument("--domain_sentences", type=int, default=20000)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--quick", action="store_true")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    if args.quick:
        args.num_with = args.num_without = 14
        args.domain_sentences = 2000
    model = ChunkFormerModel.from_pretrained(args.model_dir).eval()
    data = Path(args.data_dir)
    limit = 30 if args.quick else None
    test = read_manifest(data / "test" / "data.list")[:limit]
    dev = read_manifest(data / "dev" / "data.list")[:limit]
    work = Path(tempfile.mkdtemp(prefix="decoding_bias_"))
    write_corpus(work, {"phrases": plan_phrase_set(RARE_PHRASES, args.num_with,
                                                   args.num_without, seed=7)}, progress=False)
    phrase_items = read_manifest(work / "phrases" / "data.list")
    enc_test, enc_dev, enc_phr = encode(model, test), encode(model, dev), \
        encode(model, phrase_items)
    rows = {}

    lists = [("without list", None)] + [
        (f"with list, boost {b:g}", make_bias(model.vocab, [(q, b) for q in RARE_PHRASES]))
        for b in (1.0, 2.0, 3.0, 4.0)]
    for name, bias in lists:
        hyps, _ = search(model, enc_phr, bias)
        said = recalled = false = plain = 0
        for item, hyp in zip(phrase_items, hyps):
            inside = [q for q in RARE_PHRASES if contains(item.text, q)]
            if inside:
                said += len(inside)
                recalled += sum(contains(hyp, q) for q in inside)
            else:
                plain += 1
                false += any(contains(hyp, q) for q in RARE_PHRASES)
        test_hyps, secs = search(model, enc_test, bias)
        rows[name] = dict(recall=f"{recalled}/{said} ({100 * recalled / said:.1f} %)",
                          false_alarms=f"{false}/{plain}",
                          test_cer=round(cer([i.text for i in test], test_hyps), 2),
                          ms_per_utt=round(1000 * secs / len(test), 1))

    text = work / "domain.txt"
    text.write_text("".join(f"{s}\n" for s in domain_text(args.domain_sentences, seed=1)),
                    encoding="utf-8")
    arpa = work / "lm.arpa"
    build_lm(["--text", str(data / "train" / "data.list"), str(text), "--order", "3",
              "--output", str(arpa)])
    lm = NgramLM.load(arpa)
    best = None
    for weight in (0.1, 0.2, 0.3, 0.5, 0.8):
        for bonus in (0.0, 0.5, 1.0, 2.0, 3.0):
            hyps, _ = search(model, enc_dev, make_bias(model.vocab, None, lm, weight, bonus))
            value = cer([i.text for i in dev], hyps)
            if best is None or value < best[0]:
                best = (value, weight, bonus)
    dev_plain = cer([i.text for i in dev], search(model, enc_dev, None)[0])
    for name, bias in (("no LM", None),
                       (f"3-gram LM (weight {best[1]}, bonus {best[2]})",
                        make_bias(model.vocab, None, lm, best[1], best[2])),
                       ("3-gram LM + hotword list",
                        make_bias(model.vocab, list(RARE_PHRASES), lm, best[1], best[2]))):
        hyps, secs = search(model, enc_test, bias)
        rows[name] = dict(test_cer=round(cer([i.text for i in test], hyps), 2),
                          ms_per_utt=round(1000 * secs / len(test), 1))
    rows["dev (tuning)"] = dict(no_lm=round(dev_plain, 2), best=round(best[0], 2))
    greedy = time.perf_counter()
    for enc in enc_test:
        model.ctc.best_ids(enc)
    rows["greedy"] = dict(ms_per_utt=round(1000 * (time.perf_counter() - greedy) / len(test),
                                           2))
    rows["sets"] = dict(test=len(test), dev=len(dev), phrase_set=len(phrase_items),
                        lm_counts=lm.counts())
    common.save_results(
        "decoding_bias" + ("-quick" if args.quick else ""),
        "\n\n".join(["# decoding_bias", common.environment_note(args),
                      f"model {args.model_dir}, data {args.data_dir}; full context, beam 10.",
                      "```json\n" + json.dumps(rows, ensure_ascii=False, indent=1) + "\n```"]))


if __name__ == "__main__":
    main()
