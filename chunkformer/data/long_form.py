"""Long-form training examples: utterances joined into one example with realistic gaps, so a
model learns what a whole call looks like (pauses, line noise, turn changes), not only single
clean turns.

Plan (once per epoch, from the list alone: no audio read). Candidates are walked in an order in
which **neighbours** stand next to each other: rows of one ``group`` (call / recording) that carry
a ``start`` are sorted by it (every group's run in random order), the rows without timing follow
in random order. Walking that order, each step starts a long example with probability ``prob``
(else the row stays alone): a target length is drawn from ``seconds`` and rows are added while the
example stays within it. Two rows of one group in time order are joined across their real pause
(``next.start - prev.end``, clipped to ``gap``); any other two across a pause drawn from ``gap``.
A :class:`Composition` holds the member indices and the pauses; its fbank length is known exactly
from the durations, so the batch sampler plans with it like with any utterance.

Build (per example, randomness from the example's generator): each member's features are made as
usual (waveform transforms and dither per member), the gaps are filled in the feature domain and
the whole gets the feature transforms (SpecAugment) once. A gap is one of ``gap_kinds``:

- ``background``: frames drawn at random from the quietest tenth of the neighbouring members'
  frames: the recording's own noise floor (room tone, line hiss);
- ``silence``: near-digital silence (white noise at -80 to -65 dBFS), what a codec sends when
  nobody speaks;
- ``line``: the background plus stationary line noise (mains hum with harmonics and pink
  hiss), -3 to +10 dB relative to the background;
- ``breath``: the background with a breath-like burst (band-passed noise under a smooth
  envelope, 0.15-0.5 s, peaking 6 to 20 dB above the background).

Synthetic noises are band-limited to the telephone band when the neighbours are narrowband
(8 kHz audio), so a gap never gives itself away by its spectrum; they are added to the
background as powers (log-add of the fbanks). The targets are the members' transcripts joined
with a space, in order. Everything works on features, so lists, shards and precomputed fbank
(``feats.scp``) are joined alike.
"""
import math
from dataclasses import dataclass, field, fields
from typing import Dict, List, NamedTuple, Optional, Sequence

import numpy as np
import torch

from chunkformer.config import ConfigError, refuse_unknown
from chunkformer.data.augment import band_limit, colored_noise
from chunkformer.data.features import SAMPLE_RATE, SHIFT, WINDOW, compute_fbank

GAP_KINDS = ("background", "silence", "line", "breath")
INT16 = 32768.0
QUIET_SHARE = 0.1  # the quietest tenth of a member's frames is its background
NEPERS_PER_DB = math.log(10.0) / 10.0  # log-mel is natural-log power


@dataclass
class LongFormConfig:
    """``data.long_form`` (module docstring): share of long examples, their target length
    range, the pause range (seconds), the gap kinds' weights, and the first epoch that joins
    (before it, utterances stay alone: a model learning CTC from scratch leaves the blank
    plateau later on long examples)."""

    prob: float = 0.5
    seconds: List[float] = field(default_factory=lambda: [20.0, 60.0])
    gap: List[float] = field(default_factory=lambda: [0.2, 2.0])
    gap_kinds: Dict[str, float] = field(
        default_factory=lambda: {"background": 1.0, "silence": 1.0, "line": 1.0, "breath": 1.0})
    start_epoch: int = 0

    @classmethod
    def from_dict(cls, conf: dict) -> "LongFormConfig":
        refuse_unknown("data.long_form", conf, {f.name for f in fields(cls)})
        cfg = cls(**conf)
        if not 0.0 <= cfg.prob <= 1.0:
            raise ConfigError(f"data.long_form.prob: {cfg.prob} is not in [0, 1]")
        for name in ("seconds", "gap"):
            value = getattr(cfg, name)
            if len(value) != 2 or not 0 <= value[0] <= value[1]:
                raise ConfigError(f"data.long_form.{name}: {value} is not [low, high] with "
                                 "0 ≤ low ≤ high")
        unknown = set(cfg.gap_kinds) - set(GAP_KINDS)
        if unknown:
            raise ConfigError(f"data.long_form.gap_kinds: {sorted(unknown)} not among "
                             f"{list(GAP_KINDS)}")
        if not cfg.gap_kinds or any(w < 0 for w in cfg.gap_kinds.values()) \
                or sum(cfg.gap_kinds.values()) <= 0:
            raise ConfigError("data.long_form.gap_kinds: give weights ≥ 0, not all 0")
        return cfg


class Composition(NamedTuple):
    """One long example: ``members`` (row indices, or shard items) joined in order, with
    ``gaps[i]`` seconds between members i and i + 1."""

    members: tuple
    gaps: tuple


class Timing(NamedTuple):
    """Per candidate: duration (s), group, and start / end within the recording (NaN: unknown)."""

    durations: np.ndarray
    groups: Sequence
    starts: np.ndarray
    ends: np.ndarray

    @classmethod
    def of_rows(cls, rows: Sequence) -> "Timing":
        nan = float("nan")
        return cls(np.array([r.duration for r in rows], dtype=np.float64),
                   [r.group for r in rows],
                   np.array([nan if r.start is None else r.start for r in rows]),
                   np.array([nan if r.end is None else r.end for r in rows]))


def gap_frames(seconds: float) -> int:
    """fbank frames of a gap of ``seconds`` (features are joined, so 100 a second)."""
    return int(round(seconds * SAMPLE_RATE / SHIFT))


def neighbour_order(timing: Timing, rng: np.random.Generator) -> List[int]:
    """Candidates with every timed group's rows together in time order (groups shuffled), then
    the untimed rows shuffled."""
    timed: Dict[object, List[int]] = {}
    loose = []
    for i, (group, start) in enumerate(zip(timing.groups, timing.starts)):
        if group is not None and not math.isnan(start):
            timed.setdefault(group, []).append(i)
        else:
            loose.append(i)
    runs = [sorted(members, key=lambda i: (timing.starts[i], i)) for members in timed.values()]
    order = [i for k in rng.permutation(len(runs)) for i in runs[k]]
    return order + [loose[k] for k in rng.permutation(len(loose))]


class LongFormPlanner:
    """Per-epoch plan of units (a row index alone, or a :class:`Composition`) over candidates.

    Args:
        cfg: the :class:`LongFormConfig`.
        timing: the candidates' :class:`Timing` (indexed by candidate id).
    """

    def __init__(self, cfg: LongFormConfig, timing: Timing):
        self.cfg, self.timing = cfg, timing

    def joins(self, epoch: int) -> bool:
        """Whether ``epoch`` makes long-form units (from ``start_epoch`` on)."""
        return epoch >= self.cfg.start_epoch

    def _pause(self, a: int, b: int, rng: np.random.Generator) -> float:
        t, (low, high) = self.timing, self.cfg.gap
        neighbours = (t.groups[a] is not None and t.groups[a] == t.groups[b]
                      and not math.isnan(t.ends[a]) and not math.isnan(t.starts[b])
                      and t.starts[b] >= t.starts[a])
        if neighbours:
            return float(min(max(t.starts[b] - t.ends[a], low), high))
        return float(rng.uniform(low, high))

    def units(self, order: Sequence, rng: np.random.Generator,
              key=lambda item: item) -> list:
        """Walk ``order`` (candidates; ``key(item)`` is the candidate id into the timing) into
        units: items alone or :class:`Composition` s of consecutive items."""
        durations, cfg, units, i = self.timing.durations, self.cfg, [], 0
        while i < len(order):
            first = order[i]
            i += 1
            if rng.random() >= cfg.prob:
                units.append(first)
                continue
            target = rng.uniform(*cfg.seconds)
            members, gaps, total = [first], [], durations[key(first)]
            while i < len(order):
                pause = self._pause(key(members[-1]), key(order[i]), rng)
                if total + pause + durations[key(order[i])] > target:
                    break
                members.append(order[i])
                gaps.append(pause)
                total += pause + durations[key(order[i])]
                i += 1
            units.append(Composition(tuple(members), tuple(gaps)) if gaps else first)
        return units


def members_of(unit) -> tuple:
    """(members, gaps) of a unit: a Composition's, or ``((unit,), ())`` for a lone item."""
    return (unit.members, unit.gaps) if isinstance(unit, Composition) else ((unit,), ())


def unit_frames(unit, frames_of) -> int:
    """fbank frames of a unit: its members' (``frames_of(member)``) plus its gaps'."""
    if isinstance(unit, Composition):
        return (sum(frames_of(m) for m in unit.members)
                + sum(gap_frames(s) for s in unit.gaps))
    return frames_of(unit)


# --------------------------------------------------------------------------- gap features
def _uniform(g: torch.Generator, low: float, high: float) -> float:
    return low + (high - low) * torch.rand(1, generator=g, dtype=torch.float64).item()


def _noise(n: int, g: torch.Generator) -> np.ndarray:
    return torch.randn(n, generator=g, dtype=torch.float64).numpy()


def _at_level(x: np.ndarray, dbfs: float) -> np.ndarray:
    rms = float(np.sqrt(np.mean(x**2))) or 1.0
    return x * (INT16 * 10 ** (dbfs / 20) / rms)


def _line_noise(n: int, g: torch.Generator) -> np.ndarray:
    """Mains hum (50 or 60 Hz and odd harmonics) under pink hiss (level set later)."""
    t = np.arange(n) / SAMPLE_RATE
    mains = 50.0 if _uniform(g, 0, 1) < 0.5 else 60.0
    hum = sum(_uniform(g, 0.2, 1.0) / k * np.sin(2 * np.pi * k * mains * t + _uniform(g, 0, 6.3))
              for k in (1, 3, 5, 7))
    hiss = colored_noise(_noise(n, g), "pink")
    mix = _at_level(hum, 0.0) * _uniform(g, 0.1, 1.0) + _at_level(hiss, 0.0)
    return _at_level(mix, -40.0)


def _breath(n: int, g: torch.Generator) -> np.ndarray:
    """One breath-like burst: noise band-passed around 0.5-2 kHz under a Hann envelope,
    0.15-0.5 s (or the gap, when shorter), at a random place (level set later)."""
    length = min(n, int(_uniform(g, 0.15, 0.5) * SAMPLE_RATE))
    centre = _uniform(g, 500.0, 2000.0)
    burst = band_limit(torch.from_numpy(_noise(length, g)), SAMPLE_RATE,
                       (centre * 0.5, centre * 1.5)).numpy() * np.hanning(length)
    out = np.zeros(n)
    at = int(_uniform(g, 0, n - length + 1))
    out[at:at + length] = _at_level(burst, -40.0)
    return out


def _synthetic_gap(kind: str, n: int, g: torch.Generator) -> Optional[np.ndarray]:
    """(n,) samples of a gap kind's synthetic part (None: background only)."""
    if kind == "silence":
        return _at_level(_noise(n, g), _uniform(g, -80.0, -65.0))
    if kind == "line":
        return _line_noise(n, g)
    if kind == "breath":
        return _breath(n, g)
    return None


def _mel_centres(num_mel_bins: int) -> np.ndarray:
    """Centre frequencies (Hz) of Kaldi's mel bins from 20 Hz to Nyquist at 16 kHz."""
    def mel(f):
        return 1127.0 * np.log1p(np.asarray(f) / 700.0)
    edges = np.linspace(mel(20.0), mel(SAMPLE_RATE / 2), num_mel_bins + 2)
    return 700.0 * np.expm1(edges[1:-1] / 1127.0)


def is_narrowband(feats: torch.Tensor) -> bool:
    """Whether (T, F) fbank frames come from 8 kHz audio: in its louder half of frames the
    bins above 4.2 kHz sit far (> 6 nepers) below the 0.3-3.4 kHz band."""
    if feats.size(0) == 0:
        return False
    centres = _mel_centres(feats.size(1))
    high, band = centres > 4200.0, (centres > 300.0) & (centres < 3400.0)
    energy = feats.sum(1)
    loud = feats[energy >= energy.median()]
    return bool(loud[:, band].mean() - loud[:, high].mean() > 6.0)


def background_frames(feats: torch.Tensor) -> torch.Tensor:
    """The quietest tenth (at least one) of (T, F) frames by total log energy → (K, F)."""
    k = max(1, int(feats.size(0) * QUIET_SHARE))
    return feats[torch.argsort(feats.sum(1))[:k]]


def gap_features(frames: int, kind: str, background: torch.Tensor, narrowband: bool,
                 g: torch.Generator, num_mel_bins: int) -> torch.Tensor:
    """(frames, F) fbank of a gap: background frames drawn at random, plus the kind's
    synthetic noise added as power (log-add) at a level relative to the background's power per
    frame: line noise -3 to +10 dB, a breath's loudest frame 6 to 20 dB above it. Silence
    replaces the background."""
    picks = torch.randint(background.size(0), (frames,), generator=g)
    gap = background[picks]
    noise = _synthetic_gap(kind, (frames - 1) * SHIFT + WINDOW, g)
    if noise is None:
        return gap
    if narrowband:
        noise = band_limit(torch.from_numpy(noise), SAMPLE_RATE).numpy()
    made = compute_fbank(torch.from_numpy(noise).float(), num_mel_bins)
    if kind == "silence":  # replaces the floor: nothing but the codec's idle noise
        return made
    power = torch.logsumexp(made, 1)  # (frames,) log of each frame's total power
    level = power.mean() if kind == "line" else power.max()
    relative = _uniform(g, -3.0, 10.0) if kind == "line" else _uniform(g, 6.0, 20.0)
    floor = torch.logsumexp(background, 1).mean()
    made = made + (floor - level + relative * NEPERS_PER_DB)
    return torch.logaddexp(gap, made)


def draw_kind(weights: Dict[str, float], g: torch.Generator) -> str:
    kinds = [k for k in GAP_KINDS if weights.get(k, 0) > 0]
    p = torch.tensor([float(weights[k]) for k in kinds], dtype=torch.float64)
    return kinds[int(torch.multinomial(p, 1, generator=g).item())]


def join_features(parts: List[torch.Tensor], gaps: Sequence[float], cfg: LongFormConfig,
                  g: torch.Generator) -> torch.Tensor:
    """Members' (T_i, F) fbank joined with gap frames between consecutive ones → (T, F)."""
    out: List[torch.Tensor] = [parts[0]]
    for seconds, before, after in zip(gaps, parts[:-1], parts[1:]):
        frames = gap_frames(seconds)
        if frames > 0:
            background = background_frames(torch.cat([before, after]))
            narrow = is_narrowband(before) or is_narrowband(after)
            out.append(gap_features(frames, draw_kind(cfg.gap_kinds, g), background, narrow, g,
                                    before.size(1)))
        out.append(after)
    return torch.cat(out)


def kept_gaps(gaps: Sequence[float], kept: Sequence[int]) -> List[float]:
    """The gaps between the kept members (indices ``kept``, ascending): a left-out member's
    place is taken by the pause before the next kept one."""
    return [gaps[b - 1] for b in kept[1:]]
