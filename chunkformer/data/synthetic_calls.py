"""Whole synthetic calls for dev and test: an agent (the bank's bot) and a customer taking
turns on one telephone line, as a call-center recorder stores them.

A call has 6-10 turns, agent and customer alternating (greeting first, goodbye last, the call's
business in between), each side with one espeak-ng voice for the whole call (test: half the
calls with held-out voices and templates, as in the utterance corpus). Turn texts never occur
in train or in any other dev / test item. Rendering, at 8 kHz:

- each turn's speech is trimmed to its first and last audible sample, so turn times are the
  speech's own;
- turns follow each other after a 0.3-1.2 s pause; at one or two turn changes per call the
  customer or agent barges in, starting 0.3-0.6 s before the other side has finished;
- each side is its own channel (agent 0 = left, customer 1 = right): 300-3400 Hz band, line
  noise running through the whole call (white or pink, 20-35 dB below that side's speech),
  G.711 mu-law; the mono recording is the two channels' sum.

Written to ``<out_dir>/<split>_calls/``: ``wav/<call>.wav`` (mono) and ``wav/<call>.stereo.wav``
(two channels); lists (jsonl, read by every tool): ``calls.list`` and ``calls_stereo.list`` (one
row per call: transcript = the turns in time order), ``turns.list`` (each turn as a segment of
the mono file: ``start``, ``end``, ``group`` = call) and ``turns_stereo.list`` (the same segments
on their own ``channel`` of the stereo file, with ``role``).

    calls = plan_calls(20, "test", seed=0, used=texts_of(plan))
    write_calls("data/synth", "test", calls, jobs=2)
"""
import hashlib
import json
import random
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import List, Tuple

import numpy as np
import soundfile as sf
import torch
from tqdm import tqdm

from chunkformer.data.augment import (NOISE_KINDS, TELEPHONE_RATE, band_limit, colored_noise,
                                     mulaw_decode, mulaw_encode)
from chunkformer.data.synthetic import (ACCENT_STYLES, ACCENTS, HELD_OUT_VARIANTS, TEMPLATES,
                                        TRAIN_VARIANTS, Utterance, _espeak, _new_sentence, _sox,
                                        speaking_style)

TURNS = (6, 10)
PAUSE = (0.3, 1.2)  # seconds of line noise between turns
EDGE = (0.5, 1.5)  # before the first turn and after the last
BARGE_IN = (0.3, 0.6)  # seconds a barge-in overlaps the turn it interrupts
BARGE_INS = (1, 2)  # per call
CALL_SNR_DB = (20.0, 35.0)
ROLES = ("bot", "customer")  # channel 0 (left) is the agent, 1 (right) the customer
CHANNEL_ROLES = ("agent", "customer")
MIDDLE = ("verify_identity", "confirm", "deny", "hold", "callback")  # besides the business
BUSINESS = tuple(i for i in TEMPLATES if i not in MIDDLE + ("greeting", "goodbye"))


@dataclass(frozen=True)
class Call:
    """Everything that determines one call: its turns (Utterances whose ``role`` gives the
    channel), the pause before each turn (negative: a barge-in overlapping the previous turn;
    the first is the lead-in), the silence after the last, and each side's line noise."""

    key: str
    turns: Tuple[Utterance, ...]
    pauses: Tuple[float, ...]
    tail: float
    snr_db: Tuple[float, float]
    noise: Tuple[str, str]
    noise_seeds: Tuple[int, int]


def _intents(rng, n: int) -> List[str]:
    """A call's flow: greeting both ways, its business with checks and replies, goodbye."""
    business = rng.choice(BUSINESS)
    middle = [business if rng.random() < 0.6 else rng.choice(MIDDLE) for _ in range(n - 3)]
    return ["greeting", "greeting"] + middle + ["goodbye"]


def plan_calls(num_calls: int, split: str, seed: int, used: set) -> List[Call]:
    """Draw ``num_calls`` calls of ``split`` (dev or test); their texts are new (not in
    ``used``, which gains them)."""
    if split not in ("dev", "test"):
        raise ValueError(f"plan_calls: calls are written for dev and test, not {split!r}")
    rng, calls = random.Random(f"{seed}/{split}/calls"), []
    for c in range(num_calls):
        unseen_voice = split == "test" and rng.random() < 0.5
        variants = rng.sample(HELD_OUT_VARIANTS if unseen_voice else TRAIN_VARIANTS, 2)
        accents = [rng.choice(list(ACCENTS)) for _ in ROLES]
        n = rng.randint(*TURNS)
        barge_ins = set(rng.sample(range(1, n), rng.randint(*BARGE_INS)))
        key, turns, pauses = f"{split}-call{c:03d}", [], []
        for i, intent in enumerate(_intents(rng, n)):
            side = i % 2
            role, accent, variant = ROLES[side], accents[side], variants[side]
            style = rng.choice(ACCENT_STYLES[accent])
            try:
                intent, role, text, unseen_template = _new_sentence(rng, split, style, used,
                                                                    role=role, intent=intent)
            except RuntimeError:  # the intent's every sentence is taken: any of the role's
                intent, role, text, unseen_template = _new_sentence(rng, split, style, used,
                                                                    role=role)
            speaker = f"{accent}-{variant}"
            turns.append(Utterance(
                key=f"{key}-t{i:02d}", text=text, intent=intent, role=role, speaker=speaker,
                accent=accent, voice=f"{ACCENTS[accent]}+{variant}",
                **speaking_style(rng, intent, role), line="telephone", snr_db=0.0,
                noise="white", noise_seed=0, unseen_voice=unseen_voice,
                unseen_template=unseen_template))
            pauses.append(rng.uniform(*EDGE) if i == 0 else
                          -rng.uniform(*BARGE_IN) if i in barge_ins else rng.uniform(*PAUSE))
        calls.append(Call(key, tuple(turns), tuple(round(p, 3) for p in pauses),
                          round(rng.uniform(*EDGE), 3),
                          tuple(round(rng.uniform(*CALL_SNR_DB), 1) for _ in ROLES),
                          tuple(rng.choice(NOISE_KINDS) for _ in ROLES),
                          tuple(rng.getrandbits(32) for _ in ROLES)))
    return calls


def _turn_speech(u: Utterance) -> np.ndarray:
    """A turn's speech at 8 kHz in int16 scale, trimmed to its first and last sample above
    1% of its peak."""
    speech, rate = _espeak(u)
    x = _sox(speech, rate, ["rate", str(TELEPHONE_RATE)], u.key).astype(np.float64) * 32768.0
    loud = np.flatnonzero(np.abs(x) > 0.01 * np.abs(x).max())
    return x[loud[0]:loud[-1] + 1]


def turn_times(call: Call, lengths: List[int]) -> List[Tuple[int, int]]:
    """[start, end) sample of each turn: after its pause from the end of everything before
    (a barge-in: that many seconds before it, but never before the interrupted turn's
    start plus 0.3 s)."""
    times, end, last_start = [], 0, 0
    for i, (pause, n) in enumerate(zip(call.pauses, lengths)):
        start = end + int(round(pause * TELEPHONE_RATE))
        if i:
            start = max(start, last_start + int(0.3 * TELEPHONE_RATE))
        times.append((start, start + n))
        end, last_start = max(end, start + n), start
    return times


def render_call(call: Call) -> Tuple[np.ndarray, List[Tuple[float, float]]]:
    """Render a call → ((N, 2) int16 samples at 8 kHz, channel 0 agent and 1 customer; each
    turn's (start, end) in seconds)."""
    speech = [_turn_speech(u) for u in call.turns]
    times = turn_times(call, [len(x) for x in speech])
    total = max(e for _, e in times) + int(round(call.tail * TELEPHONE_RATE))
    channels = np.zeros((2, total))
    for u, x, (s, e) in zip(call.turns, speech, times):
        channels[ROLES.index(u.role), s:e] += x
    out = np.zeros((total, 2), dtype=np.int16)
    for side in range(2):
        line = band_limit(torch.from_numpy(channels[side]), TELEPHONE_RATE).numpy()
        active = np.concatenate([line[s:e] for u, (s, e) in zip(call.turns, times)
                                 if ROLES.index(u.role) == side])
        noise = colored_noise(np.random.default_rng(call.noise_seeds[side]).standard_normal(
            total), call.noise[side])
        noise *= np.sqrt((active**2).mean() / (noise**2).mean() / 10 ** (call.snr_db[side] / 10))
        pcm = np.clip(np.round(line + noise), -32768, 32767)
        out[:, side] = mulaw_decode(mulaw_encode(pcm))
    return out, [(s / TELEPHONE_RATE, e / TELEPHONE_RATE) for s, e in times]


def _render(job: tuple) -> Tuple[str, float, list]:
    """Pool worker: (Call, folder) → (key, seconds, turn times); writes mono and stereo."""
    call, folder = job
    stereo, times = render_call(call)
    mono = np.clip(stereo.astype(np.int32).sum(1), -32768, 32767).astype(np.int16)
    sf.write(folder / f"{call.key}.wav", mono, TELEPHONE_RATE, subtype="PCM_16")
    sf.write(folder / f"{call.key}.stereo.wav", stereo, TELEPHONE_RATE, subtype="PCM_16")
    return call.key, len(mono) / TELEPHONE_RATE, times


def _lists(folder: Path, calls: List[Call], rendered: dict) -> dict:
    """{list name: jsonl rows} of the calls (module docstring)."""
    lists = {"calls.list": [], "calls_stereo.list": [], "turns.list": [],
             "turns_stereo.list": []}
    for call in calls:
        seconds, times = rendered[call.key]
        mono = str((folder / "wav" / f"{call.key}.wav").resolve())
        stereo = str((folder / "wav" / f"{call.key}.stereo.wav").resolve())
        order = sorted(range(len(call.turns)), key=lambda i: times[i][0])
        text = " ".join(call.turns[i].text for i in order)
        for name, path in (("calls.list", mono), ("calls_stereo.list", stereo)):
            lists[name].append({"key": call.key, "wav": path, "txt": text,
                                "duration": round(seconds, 3), "group": call.key})
        for u, (s, e) in zip(call.turns, times):
            side = ROLES.index(u.role)
            row = {"key": u.key, "wav": mono, "txt": u.text, "start": round(s, 4),
                   "end": round(e, 4), "group": call.key, "speaker": u.speaker,
                   "intent": u.intent, "emotion": u.emotion, "role": CHANNEL_ROLES[side],
                   "unseen_voice": u.unseen_voice, "unseen_template": u.unseen_template}
            lists["turns.list"].append(row)
            lists["turns_stereo.list"].append(dict(row, wav=stereo, channel=side))
    return lists


def write_calls(out_dir, split: str, calls: List[Call], jobs: int = 2,
                progress: bool = True) -> Tuple[int, float, bool]:
    """Render ``calls`` into ``<out_dir>/<split>_calls/`` unless its ``.done`` marker holds
    this plan's digest → (calls, hours of audio, skipped)."""
    folder = Path(out_dir).resolve() / f"{split}_calls"
    digest = hashlib.sha256(json.dumps([asdict(c) for c in calls]).encode()).hexdigest()
    done = folder / ".done"
    if done.is_file() and done.read_text().strip() == digest:
        rows = [json.loads(line) for line in open(folder / "calls.list", encoding="utf-8")]
        return len(rows), sum(r["duration"] for r in rows) / 3600, True
    done.unlink(missing_ok=True)
    (folder / "wav").mkdir(parents=True, exist_ok=True)
    with ThreadPoolExecutor(jobs) as pool:
        results = pool.map(_render, [(c, folder / "wav") for c in calls])
        rendered = {k: (s, t) for k, s, t in tqdm(results, total=len(calls),
                                                  desc=f"{split} calls", disable=not progress)}
    for name, rows in _lists(folder, calls, rendered).items():
        (folder / name).write_text("".join(json.dumps(r, ensure_ascii=False) + "\n"
                                           for r in rows), encoding="utf-8")
    done.write_text(digest + "\n")
    return len(calls), sum(s for s, _ in rendered.values()) / 3600, False
