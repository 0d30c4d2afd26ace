"""A live stream fed in pieces of any size gives the token ids of offline long-form decoding
with the same contexts (8 and 16 kHz, int16 and float pieces), its partial text only grows,
its buffers stay bounded, and bad pieces are refused with a clear message."""
import os
import random

import numpy as np
import pytest
import soundfile as sf

from chunkformer.decoding.endless import decode_long
from chunkformer.model import ChunkFormerModel
from chunkformer.streaming.stream import StreamError


@pytest.fixture(scope="module")
def model(default_model):
    return ChunkFormerModel.from_pretrained(default_model).eval()


@pytest.fixture(scope="module")
def telephone_side(vi_speech, tmp_path_factory):
    """The espeak-ng sentences one after another with pauses, at 8 kHz int16 (~15 s)."""
    import torch
    import torchaudio

    pieces = []
    for path, _ in vi_speech:
        x, rate = sf.read(str(path), dtype="int16")
        pieces += [np.zeros(rate // 2, np.int16), x]
    wave = torchaudio.functional.resample(torch.from_numpy(np.concatenate(pieces)).double(),
                                          16000, 8000).numpy()
    wave = np.clip(np.round(wave), -32768, 32767)
    path = tmp_path_factory.mktemp("stream") / "side8k.wav"
    sf.write(str(path), wave.astype(np.int16), 8000, subtype="PCM_16")
    return path


def feed(stream, samples, rate, seed, sizes):
    """→ (transcript, partial text after each piece, frames emitted before finish)."""
    rng, i = random.Random(seed), 0
    partials = []
    while i < len(samples):
        n = rng.choice(sizes)
        stream.accept_waveform(samples[i:i + n], rate)
        partials.append(stream.partial())
        i += n
    emitted = len(stream.frame_ids)
    return stream.finish(), partials, emitted


@pytest.mark.parametrize("context", [(8, 32, 0), (8, 32, 2), (16, 32, 4)])
def test_equals_long_form_decoding_whatever_the_pieces(model, telephone_side, real_recording,
                                                      context):
    for path, dtype in ((telephone_side, "int16"), (real_recording, "float32")):
        reference = decode_long(model, str(path), *context)
        samples, rate = sf.read(str(path), dtype=dtype)
        for seed, sizes in ((0, [1, 7, 80, 160, 333]), (1, [800, 4000, 16000, 37])):
            stream = model.stream(*context, endpoint_silence=None)  # one utterance
            result, partials, emitted = feed(stream, samples, rate, seed, sizes)
            assert result.frame_ids == reference.frame_ids, (path, seed)
            assert result.text == reference.text
            assert all(result.text.startswith(p) for p in partials)  # finals never change
            # a chunk is emitted once its exact look-ahead is in, the rest at finish
            assert len(result.frame_ids) - emitted <= (stream.lookahead + 15) // 8 + 16 * 8


def test_buffers_stay_bounded(model, telephone_side, tmp_path):
    samples, rate = sf.read(str(telephone_side), dtype="int16")
    samples = np.tile(samples, 8)  # ~2 minutes
    stream = model.stream(8, 32, 2)
    most_frames = most_native = 0
    for i in range(0, len(samples), rate // 2):
        stream.accept_waveform(samples[i:i + rate // 2], rate)
        most_frames = max(most_frames, stream.feats.size(0))
        most_native = max(most_native, stream.features.native.numel())
    step = 8 * 8
    assert most_frames <= stream.lookahead + 16 * step + 15 + 50 + 10  # + one piece
    assert most_native <= rate  # under a second of native samples
    sf.write(str(tmp_path / "long.wav"), samples, rate, subtype="PCM_16")
    reference = decode_long(model, str(tmp_path / "long.wav"), 8, 32, 2)
    assert stream.finish().frame_ids == reference.frame_ids


def test_bad_pieces_are_refused(model):
    stream = model.stream(8, 32, 0)
    with pytest.raises(StreamError, match="one channel"):
        stream.accept_waveform(np.zeros((10, 2), np.int16), 8000)
    stream.accept_waveform(np.zeros(100, np.int16), 8000)
    with pytest.raises(StreamError, match="differs from the stream's 8000"):
        stream.accept_waveform(np.zeros(100, np.int16), 16000)
    assert stream.finish().text == ""
    with pytest.raises(StreamError, match="finished"):
        stream.accept_waveform(np.zeros(100, np.int16), 8000)
    with pytest.raises(StreamError, match="chunk_size > 0"):
        model.stream(0, 0, 0)


def test_endpoints_close_utterances_with_times_from_the_stream_start(model, telephone_side):
    samples, rate = sf.read(str(telephone_side), dtype="int16")
    whole = decode_long(model, str(telephone_side), 8, 32, 0)
    stream = model.stream(8, 32, 0, endpoint_silence=0.4)
    finals, closed_at = [], []
    for i in range(0, len(samples), 800):
        stream.accept_waveform(samples[i:i + 800], rate)
        got = stream.pop_finals()
        finals += got
        closed_at += [(i + 800) / rate] * len(got)
        # the partial is the open utterance only, never a closed one again
        assert not got or not stream.partial().startswith(got[-1]["text"]) or \
            not got[-1]["text"]
    result = stream.finish()
    finals += stream.pop_finals()
    assert result.frame_ids == whole.frame_ids
    assert len(finals) >= 3  # the sentences are 0.5 s apart
    # the utterances are the whole transcript cut at pauses (a piece after a pause starts a word)
    assert "".join(f["text"] for f in finals).replace(" ", "") == whole.text.replace(" ", "")
    for f, g in zip(finals, finals[1:]):
        assert f["end"] + 0.4 <= g["start"] + 1e-9  # at least the endpoint silence between
    for f in finals:
        assert f["words"] and f["start"] == f["words"][0]["start"]
        assert f["end"] == f["words"][-1]["end"]
    # an utterance is closed once the endpoint silence and the chunk's look-ahead are in
    lag = (stream.lookahead + 15) / 100 + 0.4 + 8 * 0.08 + 800 / rate + 0.08
    for f, t in zip(finals, closed_at):
        assert t - f["end"] <= lag, (f, t)
    none = model.stream(8, 32, 0, endpoint_silence=None)
    none.accept_waveform(samples, rate)
    assert none.pop_finals() == []
    none.finish()
    assert len(none.pop_finals()) == 1  # finish closes the only utterance


def _resident_mib() -> float:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS")) / 1024


@pytest.mark.skipif(os.environ.get("CHUNKFORMER_SLOW") != "1",
                    reason="an hour of audio (~1-2 min): set CHUNKFORMER_SLOW=1")
def test_an_hour_long_stream_equals_long_form_decoding_in_flat_memory(model, telephone_side,
                                                                      tmp_path):
    """60 minutes through a stream and through a group's stream, side by side: resident
    memory flat, both give decode_long's token ids on the same hour-long file."""
    from chunkformer.streaming.group import StreamGroup, TorchEngine

    samples, rate = sf.read(str(telephone_side), dtype="int16")
    repeats = -(-3600 * rate // len(samples))
    with sf.SoundFile(str(tmp_path / "hour.wav"), "w", rate, 1, "PCM_16") as f:
        for _ in range(repeats):
            f.write(samples)
    stream = model.stream(8, 32, 0, endpoint_silence=0.8)
    group = StreamGroup(TorchEngine(model), 8, 32, endpoint_silence=0.8)
    grouped = group.open()
    resident, piece = [], rate // 5
    for _ in range(repeats):
        for i in range(0, len(samples), piece):
            stream.accept_waveform(samples[i:i + piece], rate)
            grouped.accept_waveform(samples[i:i + piece], rate)
            group.run()
        stream.pop_finals()
        grouped.pop_finals()
        resident.append(_resident_mib())
    assert stream.feats.size(0) < 8 * 8 * 16 + 15 + piece // 80 + 1
    assert grouped.feats.size(0) < 8 * 8 + 15 + piece // 80 + 1
    ids, grouped_ids = stream.finish().frame_ids, grouped.finish().frame_ids
    tenth = len(resident) // 10
    assert max(resident[-tenth:]) - max(resident[tenth:2 * tenth]) < 20, resident[::tenth]
    reference = decode_long(model, str(tmp_path / "hour.wav"), 8, 32, 0)
    assert len(ids) >= 3600 / 0.08 - 1
    assert ids == reference.frame_ids and grouped_ids == reference.frame_ids


def test_reference_long_file_through_a_stream(ref_model_dir, reference_dir, reference):
    """The reference code's long-form vector (64/128/128, 6 segments with caches): the same
    frame-level token ids from a stream fed in random pieces."""
    model = ChunkFormerModel.from_pretrained(ref_model_dir).eval()
    samples, rate = sf.read(str(reference_dir / "wavs" / "long.flac"), dtype="int16")
    result, _, _ = feed(model.stream(64, 128, 128), samples, rate, 3, [160, 1600, 7919, 16000])
    assert result.frame_ids == np.asarray(reference["endless_ids"]).reshape(-1).tolist()
