"""Call outcome from turn scores (:mod:`chunkformer.analytics.turn_outcome`): fit the
turn-to-outcome layer on labeled calls, then predict and explain the outcome of other calls.

    # the utterance heads score every turn (segment rows; group = call, role = speaker role)
    python -m chunkformer.bin.evaluate_heads --model_dir exp/heads/final \
        --data turns_dev.list --output_dir exp/heads/eval_turns_dev
    python -m chunkformer.bin.call_outcome fit --turns turns_dev.list \
        --scores exp/heads/eval_turns_dev/scores.jsonl --calls calls_dev.list \
        --label_field outcome --heads intent,emotion --output exp/heads/turn_outcome.json
    python -m chunkformer.bin.call_outcome predict --model exp/heads/turn_outcome.json \
        --turns turns_test.list --scores exp/heads/eval_turns_test/scores.jsonl \
        --calls calls_test.list --label_field outcome --output_dir exp/heads/eval_outcome

``predict`` writes ``predictions.tsv`` (``evaluate_heads``' format, head ``outcome``: what
``prelabel --predictions`` reads), ``why.tsv`` (every turn's weight in the decision and the
reasons) and, when ``--calls`` carry the label, ``metrics.json`` and ``confusion_outcome.png``.
"""
import argparse
import json
import sys
from pathlib import Path

import numpy as np

from chunkformer.analytics.turn_outcome import (NO_ROLE, Turn, TurnOutcome, call_features,
                                                describe, feature_names, group_turns)
from chunkformer.bin.common import tool_main, user_error_message
from chunkformer.data.dataset import row_label
from chunkformer.data.manifest import read_manifest
from chunkformer.heads.metrics import (classification_report, confusion_matrix,
                                       save_confusion_png)


def get_parser():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    for name, text in (("fit", "fit the layer on labeled calls"),
                       ("predict", "outcome and reasons for every call")):
        s = sub.add_parser(name, help=text, formatter_class=p.formatter_class)
        s.add_argument("--turns", required=True, help="turn rows (segments; group = call key)")
        s.add_argument("--scores", required=True, help="evaluate_heads' scores.jsonl of them")
        s.add_argument("--calls", required=name == "fit", default=None,
                       help="calls with their label (for fit; for predict: to score)")
        s.add_argument("--label_field", default="outcome")
        if name == "fit":
            s.add_argument("--heads", default=None,
                           help="comma-separated heads to use (default: every scored head)")
            s.add_argument("--l2", default="auto",
                           help="weight penalty, or 'auto': chosen by 5-fold cross-validation")
            s.add_argument("--no_balance", action="store_true",
                           help="do not weigh the outcomes' calls equally")
            s.add_argument("--output", required=True, help="the layer, a JSON file")
        else:
            s.add_argument("--model", required=True, help="a layer written by fit")
            s.add_argument("--top", type=int, default=3, help="reasons per call")
            s.add_argument("--output_dir", required=True)
    return p


def read_scores(path) -> dict:
    """evaluate_heads' scores.jsonl → {key: {head: {class: p}}}; errors name the line."""
    out = {}
    try:
        lines = open(path, encoding="utf-8").read().splitlines()
    except OSError as e:
        sys.exit(f"error: {path}: {e.strerror}")
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
            key = obj.pop("key")
        except (json.JSONDecodeError, KeyError, AttributeError):
            sys.exit(f"error: {path}:{n}: expected a JSON object with 'key' and head scores")
        out[key] = obj
    return out


def load_calls(args):
    """{call: [Turn]} from the turn rows and their scores; turns without scores are counted."""
    rows = read_manifest(args.turns)
    scores = read_scores(args.scores)
    turns, calls, unscored = [], [], 0
    for r in rows:
        if r.key not in scores:
            unscored += 1
            continue
        role = row_label(r, "role")
        turns.append(Turn(r.key, r.start or 0.0, r.end if r.end is not None else
                          (r.start or 0.0) + (r.duration or 0.0),
                          str(role) if role is not None else NO_ROLE, scores[r.key]))
        calls.append(r.group)
    if unscored:
        print(f"{unscored} of {len(rows)} turns have no scores in {args.scores} (skipped)",
              file=sys.stderr)
    if not turns:
        sys.exit(f"error: no turn of {args.turns} is scored in {args.scores}")
    return group_turns(turns, calls)


def read_labels(args) -> dict:
    return {r.key: str(row_label(r, args.label_field)) for r in read_manifest(args.calls)
            if row_label(r, args.label_field) is not None}


def fit(args):
    calls = load_calls(args)
    labels = read_labels(args)
    keys = [k for k in calls if k in labels]
    if not keys:
        sys.exit(f"error: no call of {args.turns} has a '{args.label_field}' in {args.calls}")
    try:
        names = feature_names({k: calls[k] for k in keys},
                              args.heads.split(",") if args.heads else None)
        x = np.stack([call_features(calls[k], names)[0] for k in keys])
        y = [labels[k] for k in keys]
        if args.l2 == "auto":
            model, losses = TurnOutcome.fit_cv(x, y, names, not args.no_balance)
            print("cross-validated loss per l2: " + ", ".join(f"{k:g}: {v:.4f}"
                                                             for k, v in losses.items()))
        else:
            model = TurnOutcome.fit(x, y, names, not args.no_balance, float(args.l2))
    except ValueError as e:
        sys.exit(f"error: {e}")
    model.save(args.output)
    hits = sum(c == labels[k] for c, k in zip(
        (model.classes[i] for i in model.probabilities(x).argmax(-1)), keys))
    print(f"fitted on {len(keys)} calls, {len(names)} features, classes {model.classes}; "
          f"training accuracy {100 * hits / len(keys):.1f}% → {args.output}")


def predict(args):
    try:
        model = TurnOutcome.load(args.model)
    except (ValueError, OSError) as e:
        sys.exit(f"error: {user_error_message(e)}")
    calls = load_calls(args)
    labels = read_labels(args) if args.calls else {}
    out = Path(args.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    pred_lines = ["key\thead\tpredicted\tprobability"]
    why_lines = ["key\tpredicted\tprobability\tturn\tstart\tend\trole\tweight\treasons"]
    refs, hyps = [], []
    for key, turns in calls.items():
        d = model.decide(turns, args.top)
        label = d["label"]
        pred_lines.append(f"{key}\toutcome\t{label}\t{d['probability']:.4f}")
        for i, (t, w) in enumerate(zip(turns, d["weights"])):
            said = "; ".join(describe(t, j, f, v) for j, f, v, _ in d["reasons"] if j == i)
            why_lines.append(f"{key}\t{label}\t{d['probability']:.4f}\t{i + 1}\t"
                             f"{t.start:.2f}\t{t.end:.2f}\t{t.role}\t{w:.3f}\t{said}")
        if key in labels:
            refs.append(labels[key])
            hyps.append(label)
    (out / "predictions.tsv").write_text("\n".join(pred_lines) + "\n", encoding="utf-8")
    (out / "why.tsv").write_text("\n".join(why_lines) + "\n", encoding="utf-8")
    print(f"{len(calls)} calls → {out / 'predictions.tsv'}, {out / 'why.tsv'}")
    if refs:  # an outcome the layer never saw in fitting still counts (as a miss)
        classes = model.classes + sorted(set(refs) - set(model.classes))
        matrix = confusion_matrix([classes.index(v) for v in refs],
                                  [classes.index(v) for v in hyps], len(classes))
        metrics = {"outcome": {**classification_report(matrix), "matrix": matrix.tolist(),
                               "classes": classes}}
        (out / "metrics.json").write_text(json.dumps(metrics, indent=1, ensure_ascii=False))
        save_confusion_png(matrix, classes, out / "confusion_outcome.png",
                           f"outcome from turns: rows reference, columns predicted "
                           f"(accuracy {metrics['outcome']['accuracy']:.1f}%)")
        shown = {k: round(v, 2) for k, v in metrics["outcome"].items() if isinstance(v, float)}
        print(f"outcome: {shown}")


@tool_main
def main(argv=None):
    args = get_parser().parse_args(argv)
    fit(args) if args.command == "fit" else predict(args)


if __name__ == "__main__":
    main()
