"""compute_fbank against the reference's fbank (spec §5.3) and its length algebra."""
import math

import pytest
import torch

from chunkformer.data.audio import load_audio
from chunkformer.data.features import compute_fbank, num_frames


def assert_fbank_close(actual, expected, atol=1e-4):
    """Log-mel features equal up to float32 FFT rounding on another CPU.

    FFT rounding is relative to a frame's energy, so bands more than ~50 dB under the frame's
    strongest band differ by up to ~3e-3 in log between machines (measured against the
    reference: every element over 1e-4 lies ≥ 12.5 nats under its frame peak). Hence: ≤ atol on
    bands within 10 nats (43 dB) of the peak, and all bands equal as powers to 1e-4 of the peak.
    """
    actual, expected = torch.as_tensor(actual), torch.as_tensor(expected)
    assert actual.shape == expected.shape
    peak = expected.max(dim=1, keepdim=True).values  # (T, 1)
    strong = expected > peak - 10
    assert (actual - expected).abs()[strong].max() <= atol
    power_err = (actual.exp() - expected.exp()).abs() / peak.exp()
    assert power_err.max() <= 1e-4


@pytest.mark.parametrize("i", [0, 1, 2])
def test_fbank_matches_reference(reference, i):
    wave = torch.from_numpy(reference[f"wave16k_{i}"]).float()
    fbank = compute_fbank(wave)
    assert fbank.dtype == torch.float32
    assert len(fbank) == reference["fbank_lens"][i]
    assert_fbank_close(fbank, reference[f"fbank_{i}"])


def test_fbank_of_long_wav_matches_reference(reference, reference_dir):
    fbank = compute_fbank(load_audio(reference_dir / "wavs/long.flac"))
    assert_fbank_close(fbank, reference["fbank_long"])


@pytest.mark.parametrize("n", [0, 1, 399, 400, 559, 560, 2640, 16000])
def test_length_algebra(n):
    fbank = compute_fbank(torch.randn(n) * 1000)
    expected = 0 if n < 400 else 1 + (n - 400) // 160
    assert fbank.shape == (expected, 80) == (num_frames(n), 80)


def test_digital_silence_hits_log_floor():
    fbank = compute_fbank(torch.zeros(1600))
    assert torch.allclose(fbank, torch.full_like(fbank, math.log(torch.finfo(torch.float32).eps)))
    assert abs(fbank[0, 0].item() + 15.9424) < 1e-4


def test_dither_only_when_asked():
    silence = torch.zeros(4000)
    assert torch.equal(compute_fbank(silence), compute_fbank(silence))
    assert not torch.allclose(compute_fbank(silence, dither=1.0), compute_fbank(silence))
