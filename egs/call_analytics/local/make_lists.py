"""Lists for the call-analytics demo from the default corpus (top-level run.sh):

* ``utts_<split>.list``: the utterances with their ``intent``, ``emotion`` and ``speaker``
  (train utterances of shuffled words keep their emotion and speaker but lose their intent);
* ``calls_<split>.list`` + ``calls/<split>/*.wav``: synthetic calls, each 4 utterances of
  the split said by two voices in turn (one bot voice, one customer voice where the split has
  them), joined by 0.4 s of quiet noise, with an ``outcome`` from the dialogue: ``escalate``
  when a complaint is made or the customer is angry, else ``pays`` when the call talks about a
  payment, a transfer or a confirmation, else ``other``.

    python local/make_lists.py --data_dir ../../data/default --out_dir data --seed 0
"""
import argparse
import json
import random
from pathlib import Path

import numpy as np
import soundfile as sf

PAYS = {"payment_reminder", "transfer_money", "confirm"}
PER_CALL = 4
GAP = 0.4


def outcome(utts) -> str:
    if any(u["intent"] == "complaint" or (u["role"] == "customer" and u["emotion"] == "angry")
           for u in utts):
        return "escalate"
    return "pays" if any(u["intent"] in PAYS for u in utts) else "other"


def make_calls(rows, split, out_dir: Path, num_calls: int, rng):
    natural = [r for r in rows if not r.get("shuffled")]
    by_role = {role: [r for r in natural if r["role"] == role] for role in ("bot", "customer")}
    wav_dir = out_dir / "calls" / split
    wav_dir.mkdir(parents=True, exist_ok=True)
    calls = []
    for n in range(num_calls):
        bot = rng.choice(by_role["bot"])["speaker"]
        customer = rng.choice(by_role["customer"])["speaker"]
        turns = []
        for i in range(PER_CALL):  # bot, customer, bot, customer; the same two voices
            role, voice = ("bot", bot) if i % 2 == 0 else ("customer", customer)
            pool = ([r for r in by_role[role] if r["speaker"] == voice and r not in turns]
                    or [r for r in by_role[role] if r not in turns])
            turns.append(rng.choice(pool))
        waves = []
        noise = np.random.default_rng(rng.getrandbits(32))
        for u in turns:
            wave, rate = sf.read(u["wav"], dtype="float32")
            waves += [wave, noise.normal(0, 1e-3, int(GAP * rate)).astype(np.float32)]
        key = f"call-{split}-{n:04d}"
        path = wav_dir / f"{key}.wav"
        sf.write(path, np.concatenate(waves[:-1]), rate)
        calls.append({"key": key, "wav": str(path.resolve()),
                      "txt": " ".join(u["txt"] for u in turns),
                      "duration": round(sum(len(w) for w in waves[:-1]) / rate, 3),
                      "outcome": outcome(turns), "speakers": [u["speaker"] for u in turns],
                      "intents": [u["intent"] for u in turns]})
    return calls


def write(rows, path):
    with open(path, "w", encoding="utf-8") as f:
        f.writelines(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data_dir", required=True)
    p.add_argument("--out_dir", required=True)
    p.add_argument("--num_calls", type=int, nargs=2, default=[600, 100],
                   help="calls made from train and from test")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rng = random.Random(args.seed)
    for split, num in zip(("train", "test"), args.num_calls):
        rows = [json.loads(line) for line in open(Path(args.data_dir) / split / "data.list",
                                                  encoding="utf-8")]
        utts = []
        for r in rows:
            r = dict(r)
            if r.get("shuffled"):
                r.pop("intent")  # words of two sentences: no intent
            utts.append(r)
        write(utts, out / f"utts_{split}.list")
        calls = make_calls(rows, split, out, num, rng)
        write(calls, out / f"calls_{split}.list")
        counts = {k: sum(c["outcome"] == k for c in calls) for k in ("escalate", "pays", "other")}
        print(f"{split}: {len(utts)} utterances, {len(calls)} calls {counts}")
    write([json.loads(x) for x in open(out / "utts_train.list", encoding="utf-8")]
          + [json.loads(x) for x in open(out / "calls_train.list", encoding="utf-8")],
          out / "heads_train.list")


if __name__ == "__main__":
    main()
