"""Evaluate a task model's heads on a labeled list: accuracy and macro-F1 (intent, outcome),
unweighted / weighted accuracy (emotion), speaker-verification EER, confusion matrices (PNG).

    python -m chunkformer.bin.evaluate_heads --model_dir exp/heads/final \
        --data data/test/data.list --output_dir exp/heads/eval [--trials trials.txt]

Every classifier head is scored on the rows that carry its field; ``<output_dir>/metrics.json``
holds the numbers, ``confusion_<head>.png`` the pictures, ``predictions.tsv`` every row's
predicted class and probability per head, ``scores.jsonl`` every row's probabilities of all
classes (``{"key": …, "<head>": {"<class>": p, …}, …}``; what ``call_outcome`` reads for the
turns of a call). A speaker head is scored by cosine between the
embeddings of trial pairs: ``--trials`` lines ``<1|0> <key> <key>`` (1 = same speaker), or,
without it, up to ``--num_trials`` pairs drawn (seeded) from the list's ``speaker`` field.
"""
import argparse
import json
import random
import sys
from pathlib import Path

import torch
from tqdm import tqdm

from chunkformer.bin.common import tool_main
from chunkformer.data.audio import AudioError
from chunkformer.data.dataset import row_label
from chunkformer.data.manifest import read_manifest
from chunkformer.folders import load_task_model_or_exit
from chunkformer.heads.classifier import SpeakerEmbeddingHead, cosine_score
from chunkformer.heads.metrics import (classification_report, confusion_matrix,
                                       equal_error_rate, save_confusion_png)


def get_parser():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--model_dir", required=True, help="a task model folder (model: multitask)")
    p.add_argument("--data", required=True)
    p.add_argument("--output_dir", required=True)
    p.add_argument("--trials", default=None, help="speaker trials: '<1|0> <key> <key>' lines")
    p.add_argument("--num_trials", type=int, default=2000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--chunk_size", type=int, default=0, help="0: full context")
    p.add_argument("--left_context_size", type=int, default=0)
    p.add_argument("--right_context_size", type=int, default=0)
    return p


@torch.no_grad()
def predict(model, rows, context):
    """→ {key: {head: (probabilities or embedding)}} and the rows that could not be read."""
    out, bad = {}, []
    for row in tqdm(rows, unit="utt"):
        try:
            out[row.key] = model.outputs(row.audio, row.start, row.end, context)
        except AudioError as e:
            bad.append(f"{row.key}\t{e}")
    return out, bad


def draw_trials(rows, num: int, seed: int):
    """Balanced same / different-speaker pairs drawn from the rows' speakers."""
    by_speaker = {}
    for r in rows:
        if r.speaker:
            by_speaker.setdefault(r.speaker, []).append(r.key)
    rng, speakers = random.Random(seed), sorted(by_speaker)
    multi = [s for s in speakers if len(by_speaker[s]) > 1]
    if len(speakers) < 2 or not multi:
        return []
    trials = []
    for i in range(num):
        if i % 2 == 0:
            a, b = rng.sample(by_speaker[rng.choice(multi)], 2)
            trials.append((True, a, b))
        else:
            s, t = rng.sample(speakers, 2)
            trials.append((False, rng.choice(by_speaker[s]), rng.choice(by_speaker[t])))
    return trials


def read_trials(path):
    trials = []
    for n, line in enumerate(open(path, encoding="utf-8"), 1):
        f = line.split()
        if not f:
            continue
        if len(f) != 3 or f[0] not in ("0", "1"):
            sys.exit(f"error: {path}:{n}: expected '<1|0> <key> <key>', got {line.strip()!r}")
        trials.append((f[0] == "1", f[1], f[2]))
    return trials


@tool_main
def main(argv=None):
    args = get_parser().parse_args(argv)
    rows = read_manifest(args.data)
    model = load_task_model_or_exit(args.model_dir)
    out = Path(args.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    context = (args.chunk_size, args.left_context_size, args.right_context_size)
    preds, bad = predict(model, rows, context)
    metrics = {}
    lines = ["key\thead\tpredicted\tprobability"]
    class_scores = {row.key: {"key": row.key} for row in rows if row.key in preds}
    for name, head in model.heads.items():
        field = model.specs[name]["field"]
        if isinstance(head, SpeakerEmbeddingHead):
            trials = read_trials(args.trials) if args.trials else draw_trials(
                rows, args.num_trials, args.seed)
            trials = [t for t in trials if t[1] in preds and t[2] in preds]
            if trials:
                a = torch.stack([preds[k][name] for _, k, _ in trials])
                b = torch.stack([preds[k][name] for _, _, k in trials])
                scores = cosine_score(a, b).tolist()
                metrics[name] = equal_error_rate(scores, [t for t, _, _ in trials])
            continue
        index = {c: i for i, c in enumerate(head.classes)}
        refs, hyps = [], []
        for row in rows:
            if row.key not in preds:
                continue
            p = preds[row.key][name]
            class_scores[row.key][name] = {c: round(float(v), 6) for c, v in zip(head.classes, p)}
            lines.append(f"{row.key}\t{name}\t{head.classes[int(p.argmax())]}\t"
                         f"{float(p.max()):.4f}")
            value = row_label(row, field)
            if value is not None and str(value) in index:
                refs.append(index[str(value)])
                hyps.append(int(p.argmax()))
        if refs:
            matrix = confusion_matrix(refs, hyps, len(head.classes))
            metrics[name] = {**classification_report(matrix), "matrix": matrix.tolist(),
                             "classes": head.classes}
            save_confusion_png(matrix, head.classes, out / f"confusion_{name}.png",
                               f"{name}: rows reference, columns predicted "
                               f"(accuracy {metrics[name]['accuracy']:.1f}%)")
    (out / "metrics.json").write_text(json.dumps(metrics, indent=1, ensure_ascii=False))
    (out / "predictions.tsv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    (out / "scores.jsonl").write_text("".join(json.dumps(v, ensure_ascii=False) + "\n"
                                              for v in class_scores.values()), encoding="utf-8")
    if bad:
        (out / "skipped.tsv").write_text("\n".join(bad) + "\n", encoding="utf-8")
    for name, m in metrics.items():
        shown = {k: round(v, 2) for k, v in m.items() if isinstance(v, float)}
        print(f"{name}: {shown}")
    print(f"→ {out / 'metrics.json'} ({len(bad)} unreadable)")


if __name__ == "__main__":
    main()
