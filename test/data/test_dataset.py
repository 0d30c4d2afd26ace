"""Dataset: each kind of bad row skipped with its reason, per-item randomness from (seed, epoch,
index), the same fbank whatever the file's sample format, and precomputed features."""
import numpy as np
import pytest
import soundfile as sf
import torch

from chunkformer.data.audio import load_audio
from chunkformer.data.augment import SpecAugment, SpeedPerturb, TelephoneChannel
from chunkformer.data.dataset import (SKIP_KINDS, ExampleBuilder, Skipped, SpeechDataset,
                                      write_feats_scp)
from chunkformer.data.features import compute_fbank
from chunkformer.data.manifest import Utterance
from chunkformer.encoder.subsampling import subsampled_length
from pipeline_helpers import SyllableTokenizer, bad_rows, speech_rows


@pytest.fixture(scope="module")
def rows(vi_speech):
    return speech_rows(vi_speech)


def dataset(rows, seed=0, **kwargs):
    return SpeechDataset(rows, ExampleBuilder(SyllableTokenizer(), **kwargs), seed)


def augmented(rows, seed=0):
    return dataset(rows, seed, waveform_transforms=[SpeedPerturb(), TelephoneChannel(prob=0.5)],
                   feature_transforms=[SpecAugment()], dither=1.0)


def test_examples(rows):
    data = dataset(rows)
    for index, row in enumerate(rows):
        ex = data[0, index]
        assert isinstance(ex, dict), ex
        wave = load_audio(row.audio)
        assert ex["key"] == row.key and ex["audio_seconds"] == wave.numel() / 16000
        assert torch.equal(ex["feats"], compute_fbank(wave))  # no dither: inference fbank
        assert ex["targets"].tolist() == SyllableTokenizer().encode(row.text)[0]
        assert ex["targets"].numel() <= subsampled_length(ex["feats"].size(0))


def test_bad_rows_are_skipped_with_reasons(tmp_path, rows):
    bad, kinds = bad_rows(tmp_path, rows[0].audio)
    data = dataset(bad)
    for index, row in enumerate(bad):
        item = data[0, index]
        assert isinstance(item, Skipped) and item.key == row.key
        assert item.kind == kinds[row.key] and item.kind in SKIP_KINDS, item
        assert "\n" not in item.reason
    assert "'€'" in data[0, 3].reason  # the unknown characters are listed
    assert data[0, 0].audio == bad[0].audio  # the path is a field, never in the reason
    assert data[0, 0].reason == "unreadable audio: file not found"
    assert all(row.audio not in data[0, i].reason for i, row in enumerate(bad))


def test_items_depend_on_seed_epoch_index_only(rows):
    first, again = augmented(rows), augmented(rows)
    a = first[3, 1]["feats"]
    assert isinstance(first[0, 1], dict) and isinstance(first[3, 2], dict)  # others between
    assert torch.equal(again[3, 1]["feats"], a)  # dither, speed, channel and masks included
    assert torch.equal(first[3, 1]["feats"], a)
    others = [first[e, 1]["feats"] for e in (4, 5)] + [augmented(rows, s)[3, 1]["feats"]
                                                      for s in (1, 2)]
    assert all(f.shape != a.shape or not torch.equal(f, a) for f in others)


def test_dither_does_not_touch_the_global_rng(rows):
    torch.manual_seed(0)
    expected = torch.rand(3)
    torch.manual_seed(0)
    augmented(rows)[0, 0]
    assert torch.equal(torch.rand(3), expected)


@pytest.mark.parametrize("subtype, ext", [("PCM_16", "wav"), ("PCM_24", "wav"),
                                          ("PCM_32", "wav"), ("FLOAT", "wav"),
                                          ("DOUBLE", "wav"), ("PCM_16", "flac"),
                                          ("PCM_24", "flac")])
def test_same_fbank_whatever_the_sample_format(tmp_path, rows, subtype, ext):
    reference = dataset(rows[:1])[0, 0]["feats"]
    samples, rate = sf.read(rows[0].audio, dtype="int16")
    path = tmp_path / f"utt.{ext}"
    sf.write(str(path), samples.astype(np.float64) / 32768.0, rate, subtype=subtype)
    row = Utterance("utt", str(path), rows[0].text, duration=rows[0].duration)
    feats = dataset([row])[0, 0]["feats"]
    assert (feats - reference).abs().max() <= 1e-3


def test_precomputed_features(tmp_path, rows):
    missing = Utterance("gone", str(tmp_path / "gone.wav"), "xin", duration=1.0)
    scp, skipped = write_feats_scp(rows + [missing], tmp_path / "feats" / "train")
    assert [s.key for s in skipped] == ["gone"] and skipped[0].kind == "unreadable audio"
    plain, stored = dataset(rows), dataset(rows + [missing], feats_scp=scp)
    for index in range(len(rows)):
        assert torch.equal(stored[0, index]["feats"], plain[0, index]["feats"])
    assert stored[0, len(rows)].kind == "missing features"
    masked = dataset(rows, feature_transforms=[SpecAugment()], feats_scp=scp)[0, 0]["feats"]
    assert not torch.equal(masked, plain[0, 0]["feats"])  # SpecAugment still on
    with pytest.raises(ValueError, match="precomputed"):
        ExampleBuilder(SyllableTokenizer(), waveform_transforms=[SpeedPerturb()],
                       feats_scp=scp)
