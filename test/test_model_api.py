"""The upstream-style Python API on the reference model: texts, inputs of every kind."""
import numpy as np
import pytest
import soundfile as sf
import torch

from chunkformer.data.audio import AudioError


def test_batch_decode_texts_match_reference(ref_model, reference_dir, reference, ref_meta):
    wavs = [reference_dir / w for w in ref_meta["wavs"]]
    texts = ref_model.batch_decode(wavs, 64, 128, 128, 1800)
    theirs = ref_meta["batch_decode_text"]
    assert texts[:2] == theirs[:2]
    # utterance 2 is at 22.05 kHz: with the reference's own 16 kHz samples the text is exact
    wave = reference["wave16k_2"].astype(np.int16)
    assert ref_model.batch_decode([wave], 64, 128, 128, sample_rate=16000)[0] == theirs[2]


def test_batch_decode_is_batch_invariant(ref_model, reference_dir, ref_meta):
    wavs = [reference_dir / w for w in ref_meta["wavs"]]
    together = ref_model.batch_decode(wavs, 16, 24, 4, total_batch_duration=1800)
    alone = [ref_model.batch_decode([w], 16, 24, 4)[0] for w in wavs]
    tiny_groups = ref_model.batch_decode(wavs, 16, 24, 4, total_batch_duration=0.5)
    assert together == alone == tiny_groups


def test_endless_equals_batch_on_real_recording(ref_model, real_recording):
    """Forced through several long-form windows, the real CV clip decodes as in one batch."""
    wav = real_recording
    batch = ref_model.batch_decode([wav], 16, 24, 4, return_timestamps=True)[0]
    text = ref_model.endless_decode(wav, 16, 24, 4, total_batch_duration=0.5,
                                    return_timestamps=False)
    assert text == batch["text"]
    segs = ref_model.endless_decode(wav, 16, 24, 4, total_batch_duration=0.5)
    assert " ".join(s["decode"] for s in segs).split() == text.split()
    words = batch["words"]
    assert [w["word"] for w in words] == text.split()
    assert all(a["end"] <= b["start"] + 1e-9 for a, b in zip(words, words[1:]))


def test_audio_kinds_decode_alike(ref_model, vi_speech, sox, tmp_path):
    """Path, int16 array, float array, tensor, stereo and 8 kHz all decode."""
    path = vi_speech[1][0]
    data, rate = sf.read(path, dtype="int16")
    base = ref_model.batch_decode([path], 16, 24, 4)[0]
    same = ref_model.batch_decode([data, data.astype(np.float32) / 32768,
                                   torch.from_numpy(data.astype(np.float32) / 32768),
                                   np.stack([data, data], 1)], 16, 24, 4, sample_rate=rate)
    assert same == [base] * 4
    quiet = ref_model.features(data.astype(np.float32) / 32768 * 0.01, sample_rate=rate)
    loud = ref_model.features(data.astype(np.float32) / 32768, sample_rate=rate)
    assert not torch.allclose(quiet, loud)  # scale follows the samples, never normalised
    narrow = sox(path, tmp_path / "tel.wav", rate=8000)
    stereo = sox(path, tmp_path / "st.wav", channels=2)
    texts = ref_model.batch_decode([narrow, stereo], 16, 24, 4)
    assert texts[1] == base and isinstance(texts[0], str)
    assert ref_model.features(narrow).shape[0] == ref_model.features(path).shape[0]


def test_encode_accepts_upstream_full_context_spellings(ref_model):
    x = torch.randn(2, 400, 80)
    lens = torch.tensor([400, 250])
    with torch.no_grad():
        outs = [ref_model.encode(x, lens, c, 0, 0)[0] for c in (0, -1, None)]
    assert torch.equal(outs[0], outs[1]) and torch.equal(outs[0], outs[2])


def test_too_short_audio_is_refused_clearly(ref_model):
    with pytest.raises(AudioError, match="too short"):
        ref_model.batch_decode([np.zeros(1000, dtype=np.int16)], sample_rate=16000)


def test_decoded_text_has_no_special_tokens(ref_model, vi_speech):
    for r in ref_model.batch_decode([p for p, _ in vi_speech], 16, 24, 4,
                                    mode="ctc_prefix_beam", beam_size=4):
        assert "<" not in r and ">" not in r


def test_bf16_autocast_tracks_fp32(ref_model, reference):
    feats = [torch.from_numpy(reference[f"fbank_{i}"]) for i in range(3)]
    with torch.no_grad():
        fp32 = ref_model.encoder.forward_list(feats, 64, 128, 128)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            bf16 = ref_model.encoder.forward_list(feats, 64, 128, 128)
    for a, b in zip(fp32, bf16):
        assert b.dtype == torch.bfloat16
        assert (a - b.float()).abs().max() < 0.2  # activations are O(1) after the final norm
        same = (ref_model.ctc_log_probs(a).argmax(-1) == ref_model.ctc_log_probs(b).argmax(-1))
        assert same.float().mean() > 0.9
