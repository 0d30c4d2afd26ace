"""Augmentation: discrete speed factors with cached kernels and real-time speed, the telephone
channel's band and SNR, noise mixing, SpecAugment, and reproducibility from a seed."""
import math
import time

import numpy as np
import pytest
import soundfile as sf
import torch
import torchaudio

from chunkformer.data import augment, synthetic
from chunkformer.data.augment import (NoiseMixer, SpecAugment, SpeedPerturb, TelephoneChannel,
                                      band_limit, scale_to_snr)

RATE = 16000


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


def tone(freq, seconds=1.0, rate=RATE, amplitude=8000.0):
    t = torch.arange(int(seconds * rate), dtype=torch.float64) / rate
    return (amplitude * torch.sin(2 * np.pi * freq * t)).float()


def peak_hz(x, rate=RATE):
    spectrum = torch.fft.rfft(x.double() * torch.hann_window(x.numel(), dtype=torch.float64))
    return float(spectrum.abs().argmax()) * rate / x.numel()


def power_db(x, rate, low, high):
    """Power of x in the band [low, high) Hz, dB."""
    spectrum = torch.fft.rfft(x.double()).abs() ** 2
    hz = torch.arange(spectrum.numel()) * rate / x.numel()
    return 10 * float(torch.log10(spectrum[(hz >= low) & (hz < high)].sum() + 1e-9))


def test_speed_factors_are_discrete_and_change_pitch():
    x, speed = tone(1000.0), SpeedPerturb((0.9, 1.0, 1.1))
    outputs = {y.numel(): y for y in (speed(x, gen(seed)) for seed in range(40))}
    assert set(outputs) == {math.ceil(RATE / f) for f in (0.9, 1.0, 1.1)}
    for factor in (0.9, 1.1):  # faster playback, higher pitch
        assert abs(peak_hz(outputs[math.ceil(RATE / factor)]) - 1000.0 * factor) < 5.0


def test_speed_kernels_are_built_once(monkeypatch):
    speed = SpeedPerturb((0.9, 1.0, 1.1))
    built = []
    original = torchaudio.transforms.Resample.__init__
    monkeypatch.setattr(torchaudio.transforms.Resample, "__init__",
                        lambda self, *a, **k: built.append(a) or original(self, *a, **k))
    x = torch.randn(RATE)
    for seed in range(20):
        speed(x, gen(seed))
    assert built == []  # every kernel was made when the transform was


def test_speed_is_faster_than_100x_real_time_per_core():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        speed, x = SpeedPerturb((0.9, 1.1)), torch.randn(10 * RATE) * 3000
        speed(x, gen())  # warm-up
        start, calls = time.perf_counter(), 20
        for seed in range(calls):
            speed(x, gen(seed))
        real_time = calls * 10.0 / (time.perf_counter() - start)
    finally:
        torch.set_num_threads(threads)
    assert real_time > 100, f"{real_time:.0f}x real time"


@pytest.mark.parametrize("factor", [0.0, -1.0, 1.0 / 3.0 + 1e-4])
def test_speed_refuses_bad_factors(factor):
    with pytest.raises(ValueError, match="speed factor"):
        SpeedPerturb((factor,))


def test_band_limit_passes_the_telephone_band_only():
    rate = 8000
    for freq, gain_db in ((1000.0, 0.0), (2500.0, 0.0), (100.0, -40.0), (3800.0, -40.0)):
        x = tone(freq, rate=rate)
        y = band_limit(x, rate)[1000:-1000]  # away from the edges
        ratio = 20 * np.log10(float(y.abs().max()) / float(x.abs().max()))
        assert (abs(ratio) < 0.1) if gain_db == 0 else (ratio < gain_db), (freq, ratio)


def test_telephone_channel_band_and_snr():
    x = tone(440.0, seconds=2.0) + tone(1300.0, seconds=2.0) + tone(6000.0, seconds=2.0)
    channel = TelephoneChannel(prob=1.0, snr_db=(30.0, 30.0))
    y = channel(x, gen())
    assert y.shape == x.shape
    assert power_db(x, RATE, 5000, 7000) - power_db(y, RATE, 5000, 7000) > 40  # 6 kHz gone
    speech = power_db(y, RATE, 300, 3400)
    assert speech - power_db(y, RATE, 3700, 8000) > 40  # nothing above the 8 kHz band
    off = TelephoneChannel(prob=0.0)
    assert off(x, gen()) is x


def test_telephone_noise_at_the_drawn_snr():
    x = tone(1000.0, seconds=2.0)
    for snr in (10.0, 20.0):
        y = TelephoneChannel(prob=1.0, snr_db=(snr, snr), mulaw=False)(x, gen(3))
        clean = TelephoneChannel(prob=1.0, snr_db=(200.0, 200.0), mulaw=False)(x, gen(3))
        measured = 10 * np.log10(float((clean**2).mean() / ((y - clean) ** 2).mean()))
        assert abs(measured - snr) < 1.5, (snr, measured)


def test_synthetic_corpus_uses_the_same_channel():
    assert synthetic.telephone_line is augment.telephone_line


def test_noise_mixer_snr_and_looping(tmp_path):
    rng = np.random.default_rng(0)
    sf.write(str(tmp_path / "hum.wav"), (rng.standard_normal(4000) * 0.1).astype(np.float32),
             8000)  # 0.5 s at 8 kHz: looped for a 2 s utterance
    (tmp_path / "noises.txt").write_text("# noise list\nhum.wav\n\n")
    mixer = NoiseMixer.from_list(tmp_path / "noises.txt", snr_db=(10.0, 10.0), prob=1.0)
    x = tone(500.0, seconds=2.0)
    noise = mixer(x, gen()) - x
    assert abs(10 * np.log10(float((x**2).mean() / (noise**2).mean())) - 10.0) < 0.01
    period = RATE // 2  # the 0.5 s noise repeats
    assert torch.allclose(noise[period:2 * period], noise[:period], atol=1e-2)
    with pytest.raises(ValueError, match="empty"):
        NoiseMixer([])


def test_scale_to_snr_numpy_and_torch():
    s, n = np.ones(100), np.full(100, 2.0)
    assert np.isclose((s**2).mean() / (scale_to_snr(n, s, 20.0) ** 2).mean(), 100.0)
    t = scale_to_snr(torch.full((100,), 2.0), torch.ones(100), 0.0)
    assert torch.allclose(t, torch.ones(100))
    assert (scale_to_snr(np.zeros(4), s[:4], 10.0) == 0).all()  # silent noise stays silent


def test_spec_augment_masks():
    feats = torch.randn(300, 80) + 5.0
    out = SpecAugment(num_freq_masks=2, freq_width=10, num_time_masks=2, time_width=50,
                      time_width_ratio=0.1)(feats, gen())
    assert out.shape == feats.shape and not torch.equal(out, feats)
    changed = out != feats
    assert (changed.all(0).sum() <= 20) and (changed.all(1).sum() <= 2 * 30)  # widths bound
    assert torch.allclose(out[changed], feats.mean().expand(int(changed.sum())))
    none = SpecAugment(num_freq_masks=0, num_time_masks=0)(feats, gen())
    assert torch.equal(none, feats)


@pytest.mark.parametrize("make", [
    lambda: SpeedPerturb(), lambda: TelephoneChannel(prob=0.7), lambda: SpecAugment()])
def test_same_seed_same_output(make):
    transform = make()
    x = torch.randn(200, 80) if isinstance(transform, SpecAugment) else tone(300.0) + 100.0
    outs = [transform(x, gen(seed)) for seed in (5, 5, 6, 7, 8)]
    assert torch.equal(outs[0], outs[1])
    assert any(not (a.shape == outs[0].shape and torch.equal(a, outs[0])) for a in outs[2:])
