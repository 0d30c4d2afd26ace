"""Training augmentation: waveform transforms (before the fbank) and feature transforms (after).

A waveform transform maps (N,) float32 16 kHz samples in int16 scale (what
:func:`chunkformer.data.audio.load_audio` returns) to (N',) samples of the same kind; a feature
transform maps a (T, F) fbank to a (T, F) fbank. Every transform is a callable
``transform(x, generator)`` that draws all its randomness from the ``torch.Generator`` it is
given, so an example's augmentation follows from its seed alone (the dataset derives one seed per
(seed, epoch, index): resuming or changing the worker count never changes the data).

- :class:`SpeedPerturb`: sox-style ``speed`` (tempo and pitch) by one of a few discrete factors,
  through a windowed-sinc resampler whose kernel is built once per factor: 0.9 = 9→10 samples.
- :class:`TelephoneChannel`: 16 kHz → 8 kHz, 300-3400 Hz band, noise at an SNR, G.711 mu-law,
  → 16 kHz, i.e. what a call-center recording went through.
- :class:`NoiseMixer`: a random stretch of a random file from a noise list, added at an SNR.
- :class:`SpecAugment`: frequency and time masks (Park et al., 2019), no time warping.

The channel pieces (:func:`band_limit`, :func:`colored_noise`, :func:`scale_to_snr`, the mu-law
codec, :func:`telephone_line`) are also what the synthetic corpus
(:mod:`chunkformer.data.synthetic`) renders its telephone half with.
"""
import functools
import math
from fractions import Fraction
from pathlib import Path
from typing import Sequence, Tuple

import numpy as np
import torch
import torchaudio

from chunkformer.data.audio import audio_duration, load_audio
from chunkformer.data.features import SAMPLE_RATE

TELEPHONE_RATE = 8000
TELEPHONE_BAND = (300.0, 3400.0)
NOISE_KINDS = ("white", "pink")


# --------------------------------------------------------------------------- random draws
def _uniform(g: torch.Generator, low: float = 0.0, high: float = 1.0) -> float:
    return low + (high - low) * torch.rand(1, generator=g, dtype=torch.float64).item()


def _randint(g: torch.Generator, n: int) -> int:
    """Uniform integer in [0, n)."""
    return int(torch.randint(n, (1,), generator=g).item())


def _check_range(name: str, value) -> Tuple[float, float]:
    low, high = (float(v) for v in value)
    if low > high:
        raise ValueError(f"{name}: range {value} has low > high")
    return low, high


# --------------------------------------------------------------------------- channel pieces
def mulaw_encode(x: np.ndarray) -> np.ndarray:
    """int16 samples → G.711 mu-law bytes (uint8), bit for bit as sox ``-e mu-law`` writes them
    (Sun's g711.c on 14-bit input, which sox rounds from 16 bits; bias 33, segment = top bit)."""
    v = (np.asarray(x, dtype=np.int32) + 2) >> 2
    magnitude = np.minimum(np.abs(v) + 33, 0x1FFF)
    segment = np.clip(np.floor(np.log2(magnitude)).astype(np.int32) - 5, 0, 7)
    mantissa = (magnitude >> (segment + 1)) & 0x0F
    return (~(((v < 0) << 7) | (segment << 4) | mantissa) & 0xFF).astype(np.uint8)


def mulaw_decode(codes: np.ndarray) -> np.ndarray:
    """G.711 mu-law bytes → int16 samples."""
    u = ~np.asarray(codes, dtype=np.uint8)
    exponent, mantissa = (u >> 4) & 0x07, (u & 0x0F).astype(np.int32)
    magnitude = (((mantissa << 3) + 0x84) << exponent) - 0x84
    return np.where(u & 0x80, -magnitude, magnitude).astype(np.int16)


def colored_noise(white: np.ndarray, kind: str) -> np.ndarray:
    """Shape (n,) white Gaussian noise: ``white`` as is, or ``pink`` (power falling as 1/f)."""
    if kind == "white":
        return white
    if kind != "pink":
        raise ValueError(f"noise kind '{kind}': use one of {NOISE_KINDS}")
    spectrum = np.fft.rfft(white)
    return np.fft.irfft(spectrum / np.sqrt(np.maximum(np.arange(len(spectrum)), 1)), len(white))


def scale_to_snr(noise, signal, snr_db: float):
    """``noise`` scaled so that power(signal) / power(noise) is ``snr_db`` dB (numpy or torch,
    same shapes); silent noise is returned as is."""
    noise_power = (noise**2).mean()
    if noise_power == 0:
        return noise
    return noise * ((signal**2).mean() / noise_power / 10 ** (snr_db / 10)) ** 0.5


@functools.lru_cache(maxsize=4)
def _band_pass_kernel(sample_rate: int, low: float, high: float) -> torch.Tensor:
    """Zero-phase Kaiser-windowed sinc band-pass, 65 ms long (transition ≈ 80 Hz, stop-band
    ≈ -80 dB) → (taps,) float64, -6 dB at ``low`` and ``high``."""
    taps = 2 * round(0.032 * sample_rate) + 1
    t = torch.arange(taps, dtype=torch.float64) - taps // 2

    def lowpass(cutoff):
        return 2 * cutoff / sample_rate * torch.sinc(2 * cutoff / sample_rate * t)

    window = torch.kaiser_window(taps, periodic=False, beta=8.0, dtype=torch.float64)
    return (lowpass(high) - lowpass(low)) * window


def band_limit(x: torch.Tensor, sample_rate: int, band=TELEPHONE_BAND) -> torch.Tensor:
    """(N,) samples → (N,) samples with only the ``band`` (Hz) left; zero phase, no delay."""
    kernel = _band_pass_kernel(sample_rate, float(band[0]), float(band[1]))
    full = x.numel() + kernel.numel() - 1
    n = 1 << (full - 1).bit_length()  # a power of two: other FFT sizes can be 10x slower
    y = torch.fft.irfft(torch.fft.rfft(x.double(), n) * torch.fft.rfft(kernel, n), n)
    return y[kernel.numel() // 2 : kernel.numel() // 2 + x.numel()].to(x.dtype)


def telephone_line(x: np.ndarray, noise: np.ndarray, snr_db: float, mulaw: bool = True
                   ) -> np.ndarray:
    """8 kHz speech in int16 scale → what a phone line delivers: 300-3400 Hz band, ``noise``
    added at ``snr_db`` (relative to the band-limited speech), int16 quantisation, and a G.711
    mu-law round trip. (N,) float arrays in, (N,) int16 out."""
    speech = band_limit(torch.from_numpy(np.asarray(x, dtype=np.float64)), TELEPHONE_RATE)
    speech = speech.numpy()
    pcm = np.clip(np.round(speech + scale_to_snr(noise, speech, snr_db)), -32768, 32767)
    return mulaw_decode(mulaw_encode(pcm)) if mulaw else pcm.astype(np.int16)


@functools.lru_cache(maxsize=16)
def _resampler(orig: int, new: int) -> torchaudio.transforms.Resample:
    """torchaudio's windowed-sinc resampler for the rate ratio orig:new, its kernel built once
    (the kernel has ``new`` phases, so the ratio must be small: 11:10, not 16000:14545)."""
    return torchaudio.transforms.Resample(orig, new)


# --------------------------------------------------------------------------- waveform transforms
def _speed_ratio(factor: float) -> Tuple[int, int]:
    """Speed factor → (orig, new) resampling ratio: 1.1 → (11, 10) (10 samples for every 11)."""
    ratio = Fraction(factor).limit_denominator(100)
    if factor <= 0 or abs(ratio - Fraction(factor)) > 1e-9 * factor:
        raise ValueError(f"speed factor {factor}: use a positive ratio of small integers, e.g. "
                         "0.9, 1.0, 1.1 (each factor's kernel is built once)")
    return ratio.numerator, ratio.denominator


class SpeedPerturb:
    """Play the audio ``factor`` times faster (tempo and pitch), ``factor`` drawn uniformly from
    ``factors``: (N,) → (≈ N / factor,) samples.

    Each factor f = p/q is a resampling from p to q samples, whose windowed-sinc kernel (q
    phases of ~2·6·p/q taps) is built once when the transform is made; a continuous rate would
    need a new, huge kernel per call (16000:14545 has 14545 phases).
    """

    def __init__(self, factors: Sequence[float] = (0.9, 1.0, 1.1)):
        if not factors:
            raise ValueError("SpeedPerturb: give at least one factor")
        self.factors = tuple(float(f) for f in factors)
        self._ratios = [_speed_ratio(f) for f in self.factors]
        for orig, new in self._ratios:
            if orig != new:
                _resampler(orig, new)  # build the kernels before any DataLoader worker forks

    @property
    def max_stretch(self) -> float:
        """The most the audio can grow: 1 / smallest factor (for batch-size estimates)."""
        return 1.0 / min(self.factors)

    def __call__(self, wave: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        orig, new = self._ratios[_randint(g, len(self._ratios))]
        return wave if orig == new else _resampler(orig, new)(wave)


class TelephoneChannel:
    """With probability ``prob``: 16 kHz → 8 kHz → :func:`telephone_line` (band, white or pink
    noise at an SNR drawn from ``snr_db``, optional mu-law) → 16 kHz. (N,) → (N,)."""

    def __init__(self, prob: float = 0.5, snr_db=(10.0, 30.0), mulaw: bool = True):
        self.prob, self.snr_db, self.mulaw = float(prob), _check_range("snr_db", snr_db), mulaw
        _resampler(SAMPLE_RATE, TELEPHONE_RATE)  # kernels built before workers fork
        _resampler(TELEPHONE_RATE, SAMPLE_RATE)
        _band_pass_kernel(TELEPHONE_RATE, *TELEPHONE_BAND)

    def __call__(self, wave: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        if _uniform(g) >= self.prob:
            return wave
        x = _resampler(SAMPLE_RATE, TELEPHONE_RATE)(wave).double()  # (ceil(N / 2),)
        snr_db, kind = _uniform(g, *self.snr_db), NOISE_KINDS[_randint(g, len(NOISE_KINDS))]
        white = torch.randn(x.numel(), generator=g, dtype=torch.float64).numpy()
        pcm = telephone_line(x.numpy(), colored_noise(white, kind), snr_db, self.mulaw)
        up = _resampler(TELEPHONE_RATE, SAMPLE_RATE)(torch.from_numpy(pcm.astype(np.float32)))
        return up[: wave.numel()]  # 2·ceil(N / 2) ≥ N samples


class NoiseMixer:
    """With probability ``prob``, add a random stretch of a random noise file at an SNR drawn
    from ``snr_db``; a file shorter than the utterance is looped. (N,) → (N,).

    Only the stretch needed is read (any format and rate :func:`load_audio` reads); the files
    are checked, and their durations read from the headers, when the mixer is made.
    """

    def __init__(self, noise_files: Sequence, snr_db=(5.0, 20.0), prob: float = 0.5):
        self.files = [str(f) for f in noise_files]
        if not self.files:
            raise ValueError("NoiseMixer: the noise list is empty")
        self.durations = [audio_duration(f) for f in self.files]
        self.snr_db, self.prob = _check_range("snr_db", snr_db), float(prob)

    @classmethod
    def from_list(cls, list_path, **kwargs) -> "NoiseMixer":
        """Read a noise list: one audio path per line (relative to the list's folder); blank
        lines and lines starting with ``#`` are ignored."""
        list_path = Path(list_path)
        lines = (ln.strip() for ln in list_path.read_text(encoding="utf-8").splitlines())
        files = [list_path.parent / ln for ln in lines if ln and not ln.startswith("#")]
        return cls(files, **kwargs)

    def __call__(self, wave: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        if _uniform(g) >= self.prob:
            return wave
        i, n = _randint(g, len(self.files)), wave.numel()
        seconds, duration = n / SAMPLE_RATE, self.durations[i]
        start = _uniform(g, 0.0, max(0.0, duration - seconds))
        noise = load_audio(self.files[i], start=start, end=min(duration, start + seconds))
        noise = noise.repeat(math.ceil(n / noise.numel()))[:n]
        return wave + scale_to_snr(noise, wave, _uniform(g, *self.snr_db))


# --------------------------------------------------------------------------- feature transforms
class SpecAugment:
    """Frequency and time masks on a (T, F) fbank (no time warping).

    ``num_freq_masks`` bands of 0..``freq_width`` bins and ``num_time_masks`` spans of
    0..min(``time_width``, ``time_width_ratio`` · T) frames, each at a uniform position. Masked
    cells take the utterance's mean log energy rather than 0: the model normalises features
    with global CMVN inside, and a log energy of 0 would be an outlier there.
    """

    def __init__(self, num_freq_masks: int = 2, freq_width: int = 10, num_time_masks: int = 2,
                 time_width: int = 50, time_width_ratio: float = 0.2):
        self.num_freq_masks, self.freq_width = num_freq_masks, freq_width
        self.num_time_masks, self.time_width = num_time_masks, time_width
        self.time_width_ratio = time_width_ratio

    def __call__(self, feats: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        feats = feats.clone()  # (T, F)
        num_frames, num_bins = feats.shape
        fill = feats.mean()
        max_time = min(self.time_width, int(self.time_width_ratio * num_frames))
        for dim, count, width, size in ((1, self.num_freq_masks, self.freq_width, num_bins),
                                        (0, self.num_time_masks, max_time, num_frames)):
            for _ in range(count):
                w = _randint(g, min(width, size) + 1)
                start = _randint(g, size - w + 1)
                feats.narrow(dim, start, w).fill_(fill)
        return feats
