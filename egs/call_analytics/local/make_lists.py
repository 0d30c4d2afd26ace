"""Lists for the call-analytics demo from the default corpus (top-level run.sh):

* ``utts_<split>.list``: the utterances with their ``intent``, ``emotion`` and ``speaker``
  (train utterances of shuffled words keep their emotion and speaker but lose their intent);
* ``calls_<split>.list`` + ``calls/<split>/*.wav``: synthetic calls, each 4 utterances of
  the split said by two voices in turn (one bot voice, one customer voice where the split has
  them) at the telephone rate (8 kHz: wideband turns are resampled), joined by 0.4 s of
  quiet noise, with an ``outcome`` from the dialogue: ``escalate``
  when a complaint is made or the customer is angry, else ``pays`` when the call talks about a
  payment, a transfer or a confirmation, else ``other``; ``turns`` lists every turn's
  ``start``/``end`` (seconds), ``role`` and ``speaker`` (what a bot platform logs) and its
  true ``intent`` and ``emotion``;
* ``turns_<split>.list``: one segment row per turn of those calls (``group`` = the call, with
  its ``role``), for scoring the utterance heads turn by turn.

Calls are made from train (heads training), dev (fitting the turn-to-outcome layer, on
utterances the heads never trained on) and test.

    python local/make_lists.py --data_dir ../../data/default --out_dir data --seed 0
"""
import argparse
import json
import random
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
import torchaudio

PAYS = {"payment_reminder", "transfer_money", "confirm"}
PER_CALL = 4
GAP = 0.4
RATE = 8000  # a call is one telephone-rate file


def read_at_call_rate(path) -> np.ndarray:
    wave, rate = sf.read(path, dtype="float32")
    if rate == RATE:
        return wave
    return torchaudio.functional.resample(torch.from_numpy(wave), rate, RATE).numpy()


def outcome(roles, utts) -> str:
    if any(u["intent"] == "complaint" or (role == "customer" and u["emotion"] == "angry")
           for role, u in zip(roles, utts)):
        return "escalate"
    return "pays" if any(u["intent"] in PAYS for u in utts) else "other"


def make_calls(rows, split, out_dir: Path, num_calls: int, rng):
    natural = [r for r in rows if not r.get("shuffled")]
    # a small split without one role's utterances lends it any natural utterance
    by_role = {role: [r for r in natural if r["role"] == role] or natural
               for role in ("bot", "customer")}
    wav_dir = out_dir / "calls" / split
    wav_dir.mkdir(parents=True, exist_ok=True)
    calls = []
    for n in range(num_calls):
        bot = rng.choice(by_role["bot"])["speaker"]
        customer = rng.choice(by_role["customer"])["speaker"]
        turns, roles = [], []
        for i in range(PER_CALL):  # bot, customer, bot, customer; the same two voices
            role, voice = ("bot", bot) if i % 2 == 0 else ("customer", customer)
            pool = ([r for r in by_role[role] if r["speaker"] == voice and r not in turns]
                    or [r for r in by_role[role] if r not in turns])
            turns.append(rng.choice(pool))
            roles.append(role)
        waves, spans, at = [], [], 0
        noise = np.random.default_rng(rng.getrandbits(32))
        for u in turns:
            wave = read_at_call_rate(u["wav"])
            spans.append((at / RATE, (at + len(wave)) / RATE))
            waves += [wave, noise.normal(0, 1e-3, int(GAP * RATE)).astype(np.float32)]
            at += len(wave) + len(waves[-1])
        key = f"call-{split}-{n:04d}"
        path = wav_dir / f"{key}.wav"
        sf.write(path, np.concatenate(waves[:-1]), RATE)
        calls.append({"key": key, "wav": str(path.resolve()),
                      "txt": " ".join(u["txt"] for u in turns),
                      "duration": round(sum(len(w) for w in waves[:-1]) / RATE, 3),
                      "outcome": outcome(roles, turns), "speakers": [u["speaker"] for u in turns],
                      "intents": [u["intent"] for u in turns],
                      "turns": [{"start": round(a, 3), "end": round(b, 3), "role": role,
                                 "speaker": u["speaker"], "intent": u["intent"],
                                 "emotion": u["emotion"], "txt": u["txt"]}
                                for (a, b), role, u in zip(spans, roles, turns)]})
    return calls


def turn_rows(calls):
    """One segment row per turn: the call's audio from ``start`` to ``end``."""
    return [{"key": f"{c['key']}-t{i}", "wav": c["wav"], "start": t["start"], "end": t["end"],
             "group": c["key"],
             **{k: t[k] for k in ("txt", "role", "speaker", "intent", "emotion")}}
            for c in calls for i, t in enumerate(c["turns"])]


def write(rows, path):
    with open(path, "w", encoding="utf-8") as f:
        f.writelines(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data_dir", required=True)
    p.add_argument("--out_dir", required=True)
    p.add_argument("--num_calls", type=int, nargs=3, default=[600, 300, 200],
                   help="calls made from train, dev and test")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rng = random.Random(args.seed)
    for split, num in zip(("train", "dev", "test"), args.num_calls):
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
        write(turn_rows(calls), out / f"turns_{split}.list")
        counts = {k: sum(c["outcome"] == k for c in calls) for k in ("escalate", "pays", "other")}
        print(f"{split}: {len(utts)} utterances, {len(calls)} calls {counts}")
    write([json.loads(x) for x in open(out / "utts_train.list", encoding="utf-8")]
          + [json.loads(x) for x in open(out / "calls_train.list", encoding="utf-8")],
          out / "heads_train.list")


if __name__ == "__main__":
    main()
