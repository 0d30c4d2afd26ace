"""Audio loading: any file or array → 16 kHz mono float32 samples in int16 scale (spec §5).

Scale follows the sample *type*, never the amplitude: files are decoded by soundfile to float32
in [-1, 1] (PCM of any bit depth, float WAV, FLAC, OGG/Opus, MP3) and multiplied by 32768;
integer arrays are mapped from their dtype (int16 as is, int32 / 2^16, uint8 (x - 128) × 256);
float arrays are taken as [-1, 1]. Channels are averaged, then any rate is resampled to 16 kHz
with torchaudio's default windowed-sinc resampler.

:class:`FbankStream` serves fbank frame ranges of arbitrarily long recordings while reading only
the samples those frames need, so memory does not grow with the length of a call.
"""
import dataclasses
import functools
import math
import os
from pathlib import Path
from typing import Optional

import numpy as np
import soundfile as sf
import torch
import torchaudio

from chunkformer.data.features import SAMPLE_RATE, SHIFT, WINDOW, compute_fbank, num_frames

INT16_SCALE = 32768.0
# 15 fbank frames: the fewest that leave one frame after the 8x subsampling front end.
MIN_SAMPLES = WINDOW + 14 * SHIFT
# Integer sample types: int16-scale value = (x - offset) * gain.
_INT_SCALE = {
    np.dtype(np.int16): (0, 1.0),
    np.dtype(np.int32): (0, 2.0**-16),
    np.dtype(np.uint8): (128, 256.0),
}
# torchaudio's resampler defaults; its filter reaches this far (see resample_margin).
_LOWPASS_FILTER_WIDTH = 6
_ROLLOFF = 0.99


class AudioError(Exception):
    """Audio that cannot be used; the message is one line, ``<source>: <reason>``."""


def _open(path: Path) -> sf.SoundFile:
    """Open an audio file for reading, turning every failure into an AudioError."""
    if not path.exists():
        raise AudioError(f"{path}: file not found")
    try:
        return sf.SoundFile(path)
    except RuntimeError as e:  # sf.LibsndfileError and its kin
        reason = getattr(e, "error_string", str(e)).strip().splitlines()[0]
        raise AudioError(f"{path}: not an audio file / unreadable: {reason}") from e


def audio_duration(path) -> float:
    """Duration in seconds from the file header (no samples are decoded)."""
    with _open(Path(path)) as f:
        return f.frames / f.samplerate


def check_channel(what, channels: int, channel: Optional[int]) -> None:
    """AudioError when audio of ``channels`` channels has no channel ``channel``."""
    if channel is not None and channel >= channels:
        raise AudioError(f"{what}: has {channels} channel(s); channel {channel} was asked for")


def _mono(x: np.ndarray, what, channel: Optional[int] = None) -> torch.Tensor:
    """(samples,) or (samples, channels) float array → (samples,) float32 tensor: the mean of
    the channels, or only ``channel`` (0-based) when given."""
    if x.ndim == 1:
        check_channel(what, 1, channel)
    if x.ndim == 2:
        if 0 < x.shape[0] < x.shape[1]:
            raise ValueError(
                f"{what}: array of shape {tuple(x.shape)} looks like (channels, samples); "
                "pass (samples,) or (samples, channels) as soundfile returns"
            )
        check_channel(what, x.shape[1], channel)
        x = x.mean(axis=1) if channel is None else x[:, channel]
    elif x.ndim != 1:
        raise ValueError(f"{what}: expected (samples,) or (samples, channels), got {x.shape}")
    return torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))


def _array_to_int16_scale(x) -> np.ndarray:
    """Numpy/torch samples → float array in int16 scale, decided by the dtype."""
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu()
        x = (x.float() if x.dtype == torch.bfloat16 else x).numpy()
    x = np.asarray(x)
    if np.issubdtype(x.dtype, np.floating):
        return x.astype(np.float32) * INT16_SCALE
    if x.dtype not in _INT_SCALE:
        raise TypeError(f"unsupported sample type {x.dtype}: use int16, int32, uint8 or float")
    offset, gain = _INT_SCALE[x.dtype]
    return (x.astype(np.float32) - offset) * gain


def _segment(start, end, sample_rate: int, total: int, what) -> tuple[int, int]:
    """Seconds [start, end) → sample indices [s, e) clipped to ``total``, checked."""
    if start is not None and start < 0:
        raise AudioError(f"{what}: segment start {start} < 0")
    if end is not None and end <= (start or 0.0):
        raise AudioError(f"{what}: segment end {end} ≤ start {start or 0.0}")
    s = 0 if start is None else round(start * sample_rate)
    e = total if end is None else min(total, round(end * sample_rate))
    if total and s >= total:
        raise AudioError(
            f"{what}: segment starts at {start:.2f} s, after the end ({total / sample_rate:.2f} s)"
        )
    return s, e


def _read_frames(f: sf.SoundFile, s: int, e: int, path,
                 channel: Optional[int] = None) -> torch.Tensor:
    """Samples [s, e) of an open file → (e - s,) int16-scale float32 (the channels' mean, or
    one ``channel``)."""
    try:
        f.seek(s)
        x = f.read(e - s, dtype="float32", always_2d=True)  # (samples, channels)
    except RuntimeError as err:
        raise AudioError(f"{path}: not an audio file / unreadable: {err}") from err
    return _mono(x, path, channel) * INT16_SCALE


def _check_samples(wave: torch.Tensor, what) -> None:
    if wave.numel() == 0:
        raise AudioError(f"{what}: empty audio")
    if not torch.isfinite(wave).all():
        raise AudioError(f"{what}: contains NaN/inf samples")


def to_16k(wave: torch.Tensor, sample_rate: int) -> torch.Tensor:
    """Resample (N,) float32 to 16 kHz.

    Done in float64: float32 convolution rounds differently with the input length, and near-empty
    mel bands (4-8 kHz of upsampled 8 kHz audio) turn those last-bit differences into visible
    log-fbank differences between a piece of a file (FbankStream) and the whole file.
    """
    if sample_rate == SAMPLE_RATE:
        return wave
    return _resampler(int(sample_rate))(wave.double()).float()


@functools.lru_cache(maxsize=8)
def _resampler(sample_rate: int) -> torchaudio.transforms.Resample:
    """torchaudio's default sinc resampler to 16 kHz, its kernel built once per rate."""
    return torchaudio.transforms.Resample(sample_rate, SAMPLE_RATE, dtype=torch.float64)


def load_audio(source, sample_rate=None, start=None, end=None,
               channel: Optional[int] = None) -> torch.Tensor:
    """Load audio as 16 kHz mono float32 samples in int16 scale.

    Args:
        source: a file path (str or Path), or samples as a numpy array / torch tensor of shape
            (samples,) or (samples, channels) (soundfile's layout; a 2-D array with more
            columns than rows is refused as (channels, samples)). Integer dtypes int16, int32,
            uint8 are mapped by type; float arrays are taken as [-1, 1].
        sample_rate: rate of an array source (required); ignored for files.
        start: segment start in seconds (Kaldi ``segments``); only that part of a file is read.
        end: segment end in seconds (default: end of the audio).
        channel: read only this channel (0-based; a two-channel call: 0 left, 1 right);
            None mixes the channels (their mean).

    Returns:
        (N,) float32 tensor at 16 kHz, values in [-32768, 32767] for full-scale audio.

    Raises:
        AudioError: missing, unreadable or empty audio, NaN/inf samples, bad segment, a
            channel the audio does not have.
    """
    if isinstance(source, (str, os.PathLike)):
        what = Path(source)
        with _open(what) as f:
            sample_rate = f.samplerate
            wave = _read_frames(f, *_segment(start, end, sample_rate, f.frames, what), what,
                                channel)
    else:
        if sample_rate is None:
            raise ValueError("load_audio: sample_rate is required for array input")
        what = "array"
        wave = _mono(_array_to_int16_scale(source), what, channel)
        s, e = _segment(start, end, sample_rate, wave.numel(), what)
        wave = wave[s:e]
    _check_samples(wave, what)
    return to_16k(wave, sample_rate)


def audio_channels(path) -> int:
    """Channels of an audio file (1 when it cannot be read: loading it then says why)."""
    try:
        return sf.info(str(path)).channels
    except RuntimeError:
        return 1


def split_channels(row) -> list:
    """A manifest row → one row per channel (key ``<key>@ch<c>``, ``channel`` c) when it names
    no channel and its file has several; else ``[row]``."""
    count = 1 if row.channel is not None else audio_channels(row.audio)
    if count < 2:
        return [row]
    return [dataclasses.replace(row, key=f"{row.key}@ch{c}", channel=c) for c in range(count)]


def load_row(row) -> torch.Tensor:
    """A manifest row's 16 kHz samples: its file, ``start``/``end`` segment and ``channel``."""
    return load_audio(row.audio, start=row.start, end=row.end, channel=row.channel)


def ensure_long_enough(wave: torch.Tensor, key: str = "audio") -> torch.Tensor:
    """Return ``wave`` (16 kHz); raise AudioError naming ``key`` when it is too short to give
    one encoder frame (fewer than MIN_SAMPLES samples)."""
    if wave.numel() < MIN_SAMPLES:
        raise AudioError(
            f"{key}: too short: {wave.numel() / SAMPLE_RATE:.3f} s "
            f"(needs ≥ {MIN_SAMPLES / SAMPLE_RATE:.3f} s)"
        )
    return wave


def resample_margin(orig: int, new: int) -> int:
    """Input blocks of ``orig`` samples either side that one output block of the resampler needs.

    With gcd-reduced rates torchaudio's sinc resampler computes output block j (``new``
    samples) from input samples [j·orig - w, (j + 1)·orig + w), w = ceil(width · orig /
    (min(orig, new) · rolloff)). One spare block guards against off-by-one changes upstream.
    """
    width = math.ceil(_LOWPASS_FILTER_WIDTH * orig / (min(orig, new) * _ROLLOFF))
    return math.ceil(width / orig) + 1


FBANK_PIECE = 3000  # fbank frames (30 s) computed at once by FbankStream.read


class FbankStream:
    """Fbank frames [a, b) of a whole recording, computed from only the samples they need.

    ``read(a, b)`` equals ``compute_fbank(load_audio(path))[a:b]`` to float rounding: fbank
    frame i depends on 16 kHz samples [160 i, 160 i + 400) only, and those are resampled from
    an aligned native-rate window wide enough for the resampling filter (see
    :func:`resample_margin`). Memory is O(b - a), whatever the file length.

    Attributes:
        sample_rate: native rate of the source.
        num_samples: length of the whole recording at 16 kHz.
        num_frames: fbank frames of the whole recording, T = 1 + (num_samples - 400) // 160.
        duration: seconds.
    """

    def __init__(self, source, sample_rate=None, num_mel_bins: int = 80,
                 channel: Optional[int] = None):
        """Open ``source``: a path (read piecewise) or an array (loaded to 16 kHz in memory);
        ``channel``: only that channel (None: their mean)."""
        self.num_mel_bins, self.channel = num_mel_bins, channel
        if isinstance(source, (str, os.PathLike)):
            self._path, self._wave = Path(source), None
            with _open(self._path) as f:
                self.sample_rate, self._native_len = f.samplerate, f.frames
                check_channel(self._path, f.channels, channel)
        else:
            self._path, self._wave = None, load_audio(source, sample_rate, channel=channel)
            self.sample_rate, self._native_len = SAMPLE_RATE, self._wave.numel()
        g = math.gcd(self.sample_rate, SAMPLE_RATE)
        self._orig, self._new = self.sample_rate // g, SAMPLE_RATE // g
        self._margin = resample_margin(self._orig, self._new)
        self.num_samples = -(-self._new * self._native_len // self._orig)
        self.num_frames = num_frames(self.num_samples)
        self.duration = self._native_len / self.sample_rate

    def source_span(self, p: int, q: int) -> tuple[int, int]:
        """Native-rate sample range [s, e) read to produce 16 kHz samples [p, q)."""
        if self._orig == self._new:
            return p, q
        j0, j1 = p // self._new, -(-q // self._new)
        s = max(0, (j0 - self._margin) * self._orig)
        return s, min(self._native_len, (j1 + self._margin) * self._orig)

    def samples(self, p: int, q: int) -> torch.Tensor:
        """16 kHz int16-scale samples [p, q) of the whole recording → (q - p,) float32."""
        if not 0 <= p <= q <= self.num_samples:
            raise IndexError(f"samples [{p}, {q}) outside [0, {self.num_samples})")
        if p == q:
            return torch.zeros(0)
        s, e = self.source_span(p, q)
        if self._wave is not None:
            return self._wave[s:e]
        with _open(self._path) as f:
            wave = _read_frames(f, s, e, self._path, self.channel)
        _check_samples(wave, f"{self._path} [{s}, {e})")
        # s is a whole number of input blocks, so the piece's output starts on a block too.
        offset = s // self._orig * self._new
        return to_16k(wave, self.sample_rate)[p - offset : q - offset]

    def read(self, a: int, b: int) -> torch.Tensor:
        """Fbank frames [a, b) → (b - a, F) float32."""
        if not 0 <= a <= b <= self.num_frames:
            raise IndexError(f"frames [{a}, {b}) outside [0, {self.num_frames})")
        if a == b:
            return torch.zeros(0, self.num_mel_bins)
        wave = self.samples(a * SHIFT, (b - 1) * SHIFT + WINDOW)
        # frames are independent: computing them in pieces bounds the FFT temporaries
        # (~40 MB per minute of audio at once otherwise) without changing a value
        pieces = []
        for i in range(0, b - a, FBANK_PIECE):
            last = min(i + FBANK_PIECE, b - a) - 1
            pieces.append(compute_fbank(wave[i * SHIFT:last * SHIFT + WINDOW],
                                        num_mel_bins=self.num_mel_bins))
        return pieces[0] if len(pieces) == 1 else torch.cat(pieces)
