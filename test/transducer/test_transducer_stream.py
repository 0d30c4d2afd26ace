"""Transducer models live: a stream (alone or in a group) fed random pieces gives offline
long-form decoding's tokens (greedy and beam; the reference's own long-form ids at its
contexts), endpoints split them without resetting the predictor, and the server serves it."""
import copy
import random
from collections import Counter

import pytest
import soundfile as sf

from chunkformer.decoding.endless import decode_long
from chunkformer.streaming.group import StreamGroup, TorchEngine

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def long_audio(rnnt_wav, rnnt_meta):
    path = rnnt_wav(rnnt_meta["long_wav"])
    samples, rate = sf.read(str(path), dtype="int16")
    return path, samples, rate


def feed(streams, samples, rate, seed, group=None):
    rng, i = random.Random(seed), 0
    while i < len(samples):
        n = rng.choice([1, 160, 800, 3333, 16000])
        for s in streams:
            s.accept_waveform(samples[i:i + n], rate)
        if group is not None:
            group.run()
        i += n
    return [s.finish() for s in streams]


def test_stream_equals_the_reference_long_form(rnnt_model, rnnt_ref, long_audio):
    """At the reference's 64/128/128 a stream's ids are the reference's endless_ids."""
    _, samples, rate = long_audio
    (result,) = feed([rnnt_model.stream(64, 128, 128, endpoint_silence=None)], samples, rate, 0)
    assert result.ids == rnnt_ref["endless_ids"].tolist()
    assert [t.first for t in result.tokens] == rnnt_ref["endless_frames"].tolist()


@pytest.mark.parametrize("mode, beam, cap", [("rnnt_greedy", None, 64), ("rnnt_beam", 3, 64),
                                             ("rnnt_greedy", None, 2), ("rnnt_beam", 2, 2)])
def test_streams_alone_and_grouped_equal_offline(rnnt_model, long_audio, mode, beam, cap):
    """... with the model's per-frame symbol cap (the reference's 64, or 2: it bites)."""
    path, samples, rate = long_audio
    if cap != rnnt_model.max_symbols:
        rnnt_model = copy.deepcopy(rnnt_model)
        rnnt_model.max_symbols = cap
    reference = decode_long(rnnt_model, str(path), 8, 32, 0, mode=mode, beam_size=beam or 10)
    group = StreamGroup(TorchEngine(rnnt_model), 8, 32, endpoint_silence=None)
    alone = rnnt_model.stream(8, 32, 0, beam_size=beam, endpoint_silence=None)
    grouped = group.open(beam_size=beam)
    for result in feed([alone, grouped], samples, rate, 1, group):
        assert result.ids == reference.ids
        assert [t.first for t in result.tokens] == [t.first for t in reference.tokens]
    per_frame = Counter(t.first for t in reference.tokens).values()
    assert max(per_frame) == cap if cap == 2 else max(per_frame) > 2


def test_endpoints_split_the_greedy_tokens(rnnt_model, long_audio):
    path, samples, rate = long_audio
    reference = decode_long(rnnt_model, str(path), 8, 32, 0, mode="rnnt_greedy")
    stream = rnnt_model.stream(8, 32, 0, endpoint_silence=0.5)
    finals = []
    rng, i = random.Random(2), 0
    while i < len(samples):
        n = rng.choice([800, 1600, 4000])
        stream.accept_waveform(samples[i:i + n], rate)
        finals += stream.pop_finals()
        assert isinstance(stream.partial(), str)
        i += n
    result = stream.finish()
    finals += stream.pop_finals()
    assert result.ids == reference.ids  # the predictor state goes on across endpoints
    assert len(finals) >= 3
    # (this random model's endpoints can fall inside a word: compare without spaces)
    assert "".join(f["text"] for f in finals).replace(" ", "") == \
        reference.text.replace(" ", "")
    for f, g in zip(finals, finals[1:]):
        assert f["end"] <= g["start"]
