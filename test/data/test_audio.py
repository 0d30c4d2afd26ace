"""load_audio (formats, scale by sample type, mixing, resampling, segments, bad input) and
FbankStream (piecewise fbank of a whole file) — spec §5."""
import math

import numpy as np
import pytest
import soundfile as sf
import torch

from chunkformer.data import audio
from chunkformer.data.audio import (
    MIN_SAMPLES,
    AudioError,
    FbankStream,
    audio_duration,
    ensure_long_enough,
    load_audio,
)
from chunkformer.data.features import compute_fbank


@pytest.fixture(scope="module")
def utt(vi_speech):
    """First synthetic utterance: (16 kHz int16 WAV path, its samples as int16 numpy)."""
    path = vi_speech[0][0]
    return path, sf.read(path, dtype="int16")[0]


@pytest.fixture(scope="module")
def long_8k(reference_dir, tmp_path_factory, sox):
    """The reference's 27.9 s 22.05 kHz utterance converted to 8 kHz (telephone rate)."""
    src = reference_dir / "wavs/utt2_tts22k.flac"
    return sox(src, tmp_path_factory.mktemp("long") / "utt2_8k.wav", rate=8000)


@pytest.mark.parametrize("i, name", [(0, "utt0_cv16k.flac"), (1, "utt1_tts16k.flac")])
def test_reference_wavs_load_exactly(reference, reference_dir, i, name):
    wave = load_audio(reference_dir / "wavs" / name)
    assert wave.dtype == torch.float32 and wave.ndim == 1
    assert torch.equal(wave, torch.from_numpy(reference[f"wave16k_{i}"]).float())


@pytest.mark.parametrize(
    "suffix, options",
    [
        ("wav", dict(bits=24)),
        ("wav", dict(bits=32, encoding="floating-point")),
        ("flac", dict()),
        ("wav", dict(bits=16)),
    ],
    ids=["wav24", "wav-float32", "flac", "wav16"],
)
def test_file_formats_give_same_fbank(utt, tmp_path, sox, suffix, options):
    path, int16 = utt
    variant = sox(path, tmp_path / f"variant.{suffix}", **options)
    expected = compute_fbank(torch.from_numpy(int16).float())
    assert torch.allclose(compute_fbank(load_audio(variant)), expected, atol=1e-3)


@pytest.mark.parametrize(
    "make_array",
    [
        lambda x: x,  # int16 numpy
        lambda x: x.astype(np.float32) / 32768,  # float numpy in [-1, 1]
        lambda x: x.astype(np.int32) << 16,  # int32 numpy
        lambda x: torch.from_numpy(x),  # int16 tensor
        lambda x: torch.from_numpy(x).double() / 32768,  # float tensor
        lambda x: np.stack([x, x], axis=1),  # (samples, channels)
    ],
    ids=["int16", "float32", "int32", "tensor-int16", "tensor-float64", "stereo"],
)
def test_arrays_give_same_samples_as_file(utt, make_array):
    path, int16 = utt
    assert torch.allclose(load_audio(make_array(int16), sample_rate=16000), load_audio(path))


def test_scale_follows_sample_type_not_amplitude():
    quiet = np.full(1000, 0.001, dtype=np.float32)
    assert torch.allclose(load_audio(quiet, 16000), torch.full((1000,), 32.768))
    u8 = np.array([0, 128, 255], dtype=np.uint8)
    assert load_audio(u8, 16000).tolist() == [-32768.0, 0.0, 127 * 256.0]


def test_bad_arrays_are_refused():
    with pytest.raises(ValueError, match="sample_rate"):
        load_audio(np.zeros(16000, dtype=np.int16))
    with pytest.raises(ValueError, match=r"\(channels, samples\)"):
        load_audio(np.zeros((2, 16000), dtype=np.int16), 16000)
    with pytest.raises(TypeError, match="int64"):
        load_audio(np.zeros(16000, dtype=np.int64), 16000)


def test_8khz_and_22khz_resample_to_16khz(long_8k, reference_dir):
    native, _ = sf.read(long_8k)
    assert len(load_audio(long_8k)) == 2 * len(native)
    wave = load_audio(reference_dir / "wavs/utt2_tts22k.flac")
    assert len(wave) == math.ceil(616581 * 16000 / 22050)


def test_stereo_is_channel_mean(tmp_path):
    left, right = np.full(8000, 0.5, np.float32), np.full(8000, -0.25, np.float32)
    sf.write(tmp_path / "stereo.wav", np.stack([left, right], axis=1), 16000, subtype="FLOAT")
    assert torch.equal(load_audio(tmp_path / "stereo.wav"), torch.full((8000,), 0.125 * 32768))


def test_stereo_8k_file_from_sox(utt, tmp_path, sox):
    variant = sox(utt[0], tmp_path / "stereo8k.wav", rate=8000, channels=2)
    assert sf.info(variant).channels == 2
    wave = load_audio(variant)
    assert wave.ndim == 1 and len(wave) == 2 * sf.info(variant).frames


def test_segment_reads_only_that_part(utt, long_8k):
    path, int16 = utt
    segment = load_audio(path, start=0.5, end=1.0)
    assert torch.equal(segment, torch.from_numpy(int16[8000:16000]).float())
    assert torch.equal(load_audio(int16, 16000, start=0.5), torch.from_numpy(int16[8000:]).float())
    assert len(load_audio(long_8k, start=10.0, end=12.5)) == 2.5 * 16000
    with pytest.raises(AudioError, match="after the end"):
        load_audio(path, start=100.0)
    with pytest.raises(AudioError, match="≤ start"):
        load_audio(path, start=1.0, end=0.5)


def _write_bytes(path, data):
    path.write_bytes(data)
    return path


BAD_INPUTS = {
    "missing": (lambda d, wav: d / "nope.wav", "file not found"),
    "text-as-wav": (lambda d, wav: _write_bytes(d / "t.wav", b"hello\n"), "not an audio file"),
    "truncated-header": (
        lambda d, wav: _write_bytes(d / "h.wav", wav.read_bytes()[:30]),
        "not an audio file",
    ),
    "corrupt-magic": (
        lambda d, wav: _write_bytes(d / "m.wav", b"JUNK" + wav.read_bytes()[4:]),
        "not an audio file",
    ),
    "zero-length": (
        lambda d, wav: sf.write(d / "z.wav", np.zeros(0, np.int16), 16000) or d / "z.wav",
        "empty audio",
    ),
    "nan": (
        lambda d, wav: sf.write(
            d / "n.wav", np.array([0.1, np.nan] * 4000, np.float32), 16000, subtype="FLOAT"
        )
        or d / "n.wav",
        "NaN/inf",
    ),
}


@pytest.mark.parametrize("case", BAD_INPUTS)
def test_bad_files_raise_audio_error(utt, tmp_path, case):
    make, reason = BAD_INPUTS[case]
    path = make(tmp_path, utt[0])
    with pytest.raises(AudioError, match=reason) as err:
        load_audio(path)
    assert "\n" not in str(err.value) and str(path) in str(err.value)


def test_too_short():
    wave = torch.zeros(MIN_SAMPLES)
    assert ensure_long_enough(wave) is wave
    with pytest.raises(AudioError, match=r"utt1: too short: 0\.050 s \(needs ≥ 0\.165 s\)"):
        ensure_long_enough(load_audio(np.zeros(800, np.int16), 16000), "utt1")
    assert len(compute_fbank(torch.zeros(MIN_SAMPLES))) == 15


def test_audio_duration(long_8k, tmp_path):
    assert audio_duration(long_8k) == pytest.approx(616581 / 22050, abs=1e-3)
    with pytest.raises(AudioError, match="file not found"):
        audio_duration(tmp_path / "nope.wav")


# ---- FbankStream -------------------------------------------------------------------------


def _pieces(stream, size):
    """Fbank of the whole stream, read in consecutive pieces of ``size`` frames."""
    starts = range(0, stream.num_frames, size)
    return torch.cat([stream.read(a, min(a + size, stream.num_frames)) for a in starts])


@pytest.fixture(scope="module", params=["8k", "22k", "16k"])
def stream_case(request, long_8k, reference_dir):
    """(path, whole-file fbank) for an 8 kHz, a 22.05 kHz and a 66 s 16 kHz recording."""
    path = {
        "8k": long_8k,
        "22k": reference_dir / "wavs/utt2_tts22k.flac",
        "16k": reference_dir / "wavs/long.flac",
    }[request.param]
    return path, compute_fbank(load_audio(path))


@pytest.mark.parametrize("size", [7, 64, 333, 100000])
def test_stream_pieces_equal_whole_file(stream_case, size):
    path, whole = stream_case
    stream = FbankStream(path)
    assert stream.num_frames == len(whole)
    assert stream.duration == pytest.approx(audio_duration(path))
    assert torch.allclose(_pieces(stream, size), whole, atol=1e-5, rtol=0)


def test_stream_random_ranges(stream_case):
    path, whole = stream_case
    stream, rng = FbankStream(path), np.random.default_rng(0)
    for _ in range(20):
        a = int(rng.integers(0, len(whole)))
        b = int(rng.integers(a, min(len(whole), a + 200) + 1))
        assert torch.allclose(stream.read(a, b), whole[a:b], atol=1e-5, rtol=0)


def test_stream_margin_is_needed(long_8k):
    """Without the resampler margin the pieces differ: the equality tests are sensitive."""
    stream = FbankStream(long_8k)
    whole = compute_fbank(load_audio(long_8k))
    stream._margin = 0
    assert not torch.allclose(_pieces(stream, 64), whole, atol=1e-2)


def test_stream_reads_only_needed_samples(long_8k, monkeypatch):
    stream, reads = FbankStream(long_8k), []
    real_read = sf.SoundFile.read

    def spy(f, n, **kwargs):
        reads.append(n)
        return real_read(f, n, **kwargs)

    monkeypatch.setattr(sf.SoundFile, "read", spy)
    stream.read(1000, 1010)  # 16 kHz samples [160000, 161840) → 920 samples at 8 kHz
    assert reads == [920 + 2 * audio.resample_margin(1, 2)]


def test_stream_in_memory_and_bounds(utt):
    path, int16 = utt
    stream = FbankStream(int16, sample_rate=16000)
    whole = compute_fbank(load_audio(path))
    assert stream.num_frames == len(whole)
    assert torch.equal(stream.read(3, 40), whole[3:40])
    assert stream.read(5, 5).shape == (0, 80) and stream.samples(7, 7).shape == (0,)
    with pytest.raises(IndexError):
        stream.read(0, len(whole) + 1)
