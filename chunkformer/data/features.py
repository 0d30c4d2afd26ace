"""Kaldi-compatible 80-dim log-mel filterbank: the one feature function of the toolkit (spec §5.3).

Inference, training and long-form streaming all call :func:`compute_fbank`, so features never
drift between them. Frame ``i`` covers 16 kHz samples ``[160 i, 160 i + 400)`` and is computed
from those samples alone (per-frame DC removal and pre-emphasis, ``snip_edges=True``), which is
what lets :class:`chunkformer.data.audio.FbankStream` compute any frame range of a long file
from a slice of it.
"""
import torch
import torchaudio.compliance.kaldi as kaldi

SAMPLE_RATE = 16000
FRAME_LENGTH_MS = 25
FRAME_SHIFT_MS = 10
WINDOW = SAMPLE_RATE * FRAME_LENGTH_MS // 1000  # 400 samples
SHIFT = SAMPLE_RATE * FRAME_SHIFT_MS // 1000  # 160 samples


def num_frames(num_samples: int) -> int:
    """Fbank frames for ``num_samples`` 16 kHz samples: ``1 + (N - 400) // 160``, 0 if N < 400."""
    return 0 if num_samples < WINDOW else 1 + (num_samples - WINDOW) // SHIFT


def compute_fbank(
    wave: torch.Tensor,
    num_mel_bins: int = 80,
    frame_length: int = FRAME_LENGTH_MS,
    frame_shift: int = FRAME_SHIFT_MS,
    dither: float = 0.0,
) -> torch.Tensor:
    """Log-mel filterbank of a 16 kHz waveform in int16 scale.

    Args:
        wave: (N,) float samples at 16 kHz in int16 scale ([-1, 1] × 32768).
        num_mel_bins: mel bands F.
        frame_length: window in ms.
        frame_shift: hop in ms.
        dither: Kaldi dither amplitude (0 for inference, 1.0 for training, spec §5.4).

    Returns:
        (T, F) float32 features, T = 1 + (N - 400) // 160 with the defaults; (0, F) when the
        audio is shorter than one window.
    """
    wave = torch.as_tensor(wave, dtype=torch.float32)
    if wave.numel() < SAMPLE_RATE * frame_length // 1000:
        return torch.zeros(0, num_mel_bins)
    return kaldi.fbank(
        wave[None],  # (1, N)
        num_mel_bins=num_mel_bins,
        frame_length=frame_length,
        frame_shift=frame_shift,
        dither=dither,
        energy_floor=0.0,
        sample_frequency=SAMPLE_RATE,
    )
