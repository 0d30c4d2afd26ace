"""The demo's table: every head's test numbers on the trained vs the random encoder.

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
        ("calls", "outcome", "accuracy", "call outcome accuracy %"),
        ("calls", "outcome", "macro_f1", "call outcome macro-F1 %"))


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--exp_dir", required=True)
    exp = Path(p.parse_args().exp_dir)
    metrics = {(init, s): json.loads((exp / f"heads_{init}" / f"eval_{s}" / "metrics.json")
                                     .read_text()) for init in ("trained", "random")
               for s in ("utts", "calls")}
    lines = ["| test set metric | trained encoder | random encoder |", "|---|---|---|"]
    for s, head, key, title in ROWS:
        got = [metrics[init, s].get(head, {}).get(key) for init in ("trained", "random")]
        lines.append(f"| {title} | " + " | ".join("—" if v is None else f"{v:.1f}"
                                                   for v in got) + " |")
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
