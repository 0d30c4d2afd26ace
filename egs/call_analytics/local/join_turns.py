"""Per-call transcripts from per-turn ones: the turns' texts (Kaldi text, ``recognize``'s
output) joined in the order of the turn list, one ``<call> <text>`` line per call (the turn
rows' ``group``), for ``prelabel --transcripts``.

    python local/join_turns.py --turns data/turns_test.list --text exp/turns_asr/text
"""
import argparse
import json


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--turns", required=True)
    p.add_argument("--text", required=True)
    args = p.parse_args()
    said = {}
    for line in open(args.text, encoding="utf-8"):
        key, _, text = line.rstrip("\n").partition(" ")
        said[key] = text
    calls = {}
    for line in open(args.turns, encoding="utf-8"):
        row = json.loads(line)
        calls.setdefault(row["group"], []).append(said.get(row["key"], ""))
    for call, texts in calls.items():
        print(call, " ".join(t for t in texts if t))


if __name__ == "__main__":
    main()
