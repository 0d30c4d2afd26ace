"""The demo's table: every head's test numbers on the trained vs the random encoder, the call
outcome both from the whole-call head and from the heads' turn scores, against the majority
class.

    python local/summarize.py --exp_dir exp
"""
import argparse
import csv
import json
from pathlib import Path

ROWS = (("utts", "intent", "accuracy", "intent accuracy %"),
        ("utts", "intent", "macro_f1", "intent macro-F1 %"),
        ("utts", "emotion", "unweighted_accuracy", "emotion UA %"),
        ("utts", "emotion", "accuracy", "emotion WA %"),
        ("utts", "speaker", "eer", "speaker EER % (lower is better)"),
        ("calls", "outcome", "accuracy", "call outcome, whole-call head: accuracy %"),
        ("calls", "outcome", "unweighted_accuracy", "call outcome, whole-call head: UA %"),
        ("calls", "outcome", "macro_f1", "call outcome, whole-call head: macro-F1 %"),
        ("turn_outcome", "outcome", "accuracy", "call outcome from turn scores: accuracy %"),
        ("turn_outcome", "outcome", "unweighted_accuracy", "call outcome from turn scores: UA %"),
        ("turn_outcome", "outcome", "macro_f1", "call outcome from turn scores: macro-F1 %"))


def majority_baseline(matrix) -> str:
    """Accuracy / UA / macro-F1 of always answering the most frequent reference class."""
    support = [n for n in (sum(row) for row in matrix) if n]  # the classes that occur
    top, total = max(support), sum(support)
    f1 = 2 * top / (top + total)  # precision top / total, recall 1; the other classes 0
    return (f"{100 * top / total:.1f} / {100 / len(support):.1f} / "
            f"{100 * f1 / len(support):.1f}")


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--exp_dir", required=True)
    exp = Path(p.parse_args().exp_dir)
    metrics = {(init, s): json.loads((exp / f"heads_{init}" / f"eval_{s}" / "metrics.json")
                                     .read_text()) for init in ("trained", "random")
               for s in ("utts", "calls", "turn_outcome")}
    lines = ["| test set metric | trained encoder | random encoder |", "|---|---|---|"]
    for s, head, key, title in ROWS:
        got = [metrics[init, s].get(head, {}).get(key) for init in ("trained", "random")]
        lines.append(f"| {title} | " + " | ".join("—" if v is None else f"{v:.1f}"
                                                   for v in got) + " |")
    outcome = metrics["trained", "turn_outcome"].get("outcome")
    if outcome:
        lines += ["", f"Always the majority outcome on these {sum(map(sum, outcome['matrix']))} "
                  f"test calls: accuracy / UA / macro-F1 {majority_baseline(outcome['matrix'])} %."]
    pre = exp / "prelabel.csv"
    if pre.is_file():
        rows = list(csv.DictReader(open(pre, encoding="utf-8")))
        truth = {json.loads(x)["key"]: json.loads(x)["outcome"]
                 for x in open(exp / "data" / "calls_test.list", encoding="utf-8")}
        proposed = [r for r in rows if r["proposed_label"]]
        hits = sum(truth.get(r["key"]) == r["proposed_label"] for r in proposed)
        lines += ["", f"Pre-labeling of {len(rows)} test calls (20 labeled): {len(proposed)} "
                  f"proposals, {100 * hits / max(len(proposed), 1):.1f}% agree with the "
                  "true outcome."]
    print("\n".join(lines))


if __name__ == "__main__":
    main()
