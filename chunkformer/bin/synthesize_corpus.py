"""Generate the synthetic Vietnamese banking call-center corpus (espeak-ng + sox, offline).

    python -m chunkformer.bin.synthesize_corpus --out_dir data/synth \
        --num_train 1200 --num_dev 100 --num_test 200 --seed 0 --telephone_fraction 0.5 --jobs 2

Writes ``<out_dir>/{train,dev,test}/`` with ``wav/`` (16 kHz wideband, 8 kHz telephone, 16-bit
PCM), Kaldi ``wav.scp``, ``text``, ``utt2spk``, ``utt2dur`` and a jsonl ``data.list`` (key, wav,
txt, duration, speaker, intent, emotion, line (telephone / wideband), role, accent, snr_db,
unseen_voice,
unseen_template, shuffled). ``--num_domain_text N`` also writes ``<out_dir>/domain_text.txt``:
N template sentences with train values, text only, for a language model. With ``--num_dev_calls`` / ``--num_test_calls``, also
``<out_dir>/{dev,test}_calls/``: whole two-channel 8 kHz calls (mono and stereo files, lists
of calls and of their turns with true times; :mod:`chunkformer.data.synthetic_calls`). Dev and
test sentences never occur in train; test adds unseen
templates and unseen voices; ``--shuffled_fraction`` of train speaks the words of two sentences
in random order. A split whose ``.done`` marker matches the requested plan is skipped on
re-runs.
See :mod:`chunkformer.data.synthetic` for what is generated.
"""
import argparse
import sys
import time
from pathlib import Path

from chunkformer.bin.common import tool_main
from chunkformer.data.synthetic import domain_text, plan_corpus, write_corpus
from chunkformer.data.synthetic_calls import plan_calls, write_calls


def get_parser():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--out_dir", required=True)
    p.add_argument("--num_train", type=int, default=1200)
    p.add_argument("--num_dev", type=int, default=100)
    p.add_argument("--num_test", type=int, default=200)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--telephone_fraction", type=float, default=0.5,
                   help="share of each split sent through the 8 kHz telephone channel")
    p.add_argument("--unseen_voice_fraction", type=float, default=0.5,
                   help="share of test spoken by held-out voices")
    p.add_argument("--shuffled_fraction", type=float, default=0.7,
                   help="share of train that speaks the words of two sentences in random order, so "
                        "that a model learns words, not the templates' word order")
    p.add_argument("--even_word_fraction", type=float, default=0.5,
                   help="share of the words of a shuffled utterance drawn evenly from the train "
                        "vocabulary (rare templates' words are heard as often as common ones)")
    p.add_argument("--num_dev_calls", type=int, default=0,
                   help="whole two-channel calls written for dev (<out_dir>/dev_calls)")
    p.add_argument("--num_test_calls", type=int, default=0,
                   help="whole two-channel calls written for test (<out_dir>/test_calls)")
    p.add_argument("--num_domain_text", type=int, default=0,
                   help="sentences of in-domain text (no audio) written to domain_text.txt")
    p.add_argument("--jobs", type=int, default=2, help="parallel espeak-ng/sox pipelines")
    p.add_argument("--no_progress", action="store_true", help="no progress bars")
    return p


@tool_main
def main(argv=None) -> int:
    args = get_parser().parse_args(argv)
    start = time.perf_counter()
    try:
        plan = plan_corpus(args.num_train, args.num_dev, args.num_test, args.seed,
                           args.telephone_fraction, args.unseen_voice_fraction,
                           args.shuffled_fraction, args.even_word_fraction)
        summaries = write_corpus(args.out_dir, plan, args.jobs, progress=not args.no_progress)
        used = {u.text for items in plan.values() for u in items}
        calls = {split: write_calls(args.out_dir, split, plan_calls(n, split, args.seed, used),
                                    args.jobs, progress=not args.no_progress)
                 for split, n in (("dev", args.num_dev_calls), ("test", args.num_test_calls))
                 if n > 0}
        if args.num_domain_text > 0:
            text = Path(args.out_dir) / "domain_text.txt"
            text.write_text("".join(f"{line}\n" for line in
                                    domain_text(args.num_domain_text, args.seed)),
                            encoding="utf-8")
    except (ValueError, RuntimeError) as e:
        sys.exit(f"error: {e}")
    if args.num_domain_text > 0:
        print(f"domain text: {args.num_domain_text} sentences → {text}")
    for s in summaries:
        state = "already done, skipped" if s.skipped else f"{s.seconds:.1f} s"
        print(f"{s.split}: {s.utterances} utterances ({s.telephone} telephone), "
              f"{s.hours:.2f} h of audio, {state}")
    for split, (n, hours, skipped) in calls.items():
        print(f"{split}_calls: {n} two-channel 8 kHz calls, {hours:.2f} h of audio"
              + (", already done, skipped" if skipped else ""))
    print(f"total: {sum(s.hours for s in summaries) + sum(c[1] for c in calls.values()):.2f} h "
          "of audio in "
          f"{time.perf_counter() - start:.1f} s → {args.out_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
