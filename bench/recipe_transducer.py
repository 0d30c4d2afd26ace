"""The default recipe's CTC model against its transducer variant on the test set: CER and
decoding time per mode (encoder + search, full context, masked batches of 50, 2 threads).

    bash run.sh                                                  # exp: the CTC model
    bash run.sh --config conf/train_default_rnnt.yaml --exp_dir exp/default_rnnt \
        --decode_mode rnnt_greedy --stage 3                      # the transducer
    . tools/env.sh && python bench/recipe_transducer.py [--ctc exp/default/final]
"""
import argparse
import json
import time

import torch

from chunkformer.data.text import normalize_text
from chunkformer.decoding.batch import decode_features, set_max_symbols
from chunkformer.decoding.metrics import ErrorTally, error_counts
from chunkformer.model import ChunkFormerModel


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--ctc", default="exp/default/final")
    p.add_argument("--rnnt", default="exp/default_rnnt/final")
    p.add_argument("--data", default="data/default/test/data.list")
    p.add_argument("--max_symbols", type=int, default=4,
                   help="the transducer's symbols per frame at most (run.sh's max_symbols)")
    args = p.parse_args()
    torch.set_num_threads(2)
    rows = [json.loads(line) for line in open(args.data)]
    audio = sum(r["duration"] for r in rows)
    for name, folder, modes in (
            ("CTC", args.ctc, [("ctc_greedy", 10), ("ctc_prefix_beam", 4)]),
            ("RNN-T", args.rnnt, [("rnnt_greedy", 10), ("rnnt_beam", 4), ("ctc_greedy", 10)])):
        m = ChunkFormerModel.from_pretrained(folder)
        set_max_symbols(m, args.max_symbols if name == "RNN-T" else None)
        feats = [m.features(r["wav"]) for r in rows]
        for mode, beam in modes:
            t = time.perf_counter()
            out = []
            for i in range(0, len(feats), 50):
                out += decode_features(m, feats[i:i+50], None, 0, 0, mode=mode, beam_size=beam)
            secs = time.perf_counter() - t
            c = ErrorTally()
            for r, h in zip(rows, out):
                c.add(*error_counts(normalize_text(r["txt"]), normalize_text(h.text), "char"))
            print(f"{name} {mode} beam {beam}: CER {100 * c.rate:.2f} %, {secs:.2f} s for "
                  f"{audio:.0f} s audio, RTF {secs / audio:.4f}")


if __name__ == "__main__":
    main()
