"""Live streams decoded by prefix beam search with hotwords and an LM: alone and in a group,
whatever the pieces, they give offline beam decoding's tokens with the same contexts and bias;
with endpoints, each final is the search's best and the rare phrases come back."""
import random

import numpy as np
import pytest
import soundfile as sf
import torch
import torchaudio

from chunkformer.data.synthetic import RARE_PHRASES, plan_phrase_set, write_corpus
from chunkformer.decoding.endless import decode_long
from chunkformer.decoding.search import PrefixBeamSearch
from chunkformer.lm.arpa import NgramLM
from chunkformer.lm.kneser_ney import count_ngrams, estimate
from chunkformer.model import ChunkFormerModel
from chunkformer.streaming.group import StreamGroup, TorchEngine
from chunkformer.streaming.stream import StreamError

pytestmark = pytest.mark.usefixtures("sox")


@pytest.fixture(scope="module")
def model(default_model):
    return ChunkFormerModel.from_pretrained(default_model).eval()


@pytest.fixture(scope="module")
def phrase_call(tmp_path_factory):
    """Four utterances that say rare phrases, 0.6 s apart, at 8 kHz int16 → (path, texts)."""
    folder = tmp_path_factory.mktemp("phrase_call")
    items = plan_phrase_set(RARE_PHRASES, 4, 0, seed=11)
    write_corpus(folder, {"set": items}, progress=False)
    pieces = []
    for u in items:
        x, rate = sf.read(str(folder / "set" / "wav" / f"{u.key}.wav"), dtype="int16")
        if rate != 8000:
            x = torchaudio.functional.resample(torch.from_numpy(x).double(), rate, 8000)
            x = np.clip(np.round(x.numpy()), -32768, 32767).astype(np.int16)
        pieces += [np.zeros(4800, np.int16), x]
    path = folder / "call8k.wav"
    sf.write(str(path), np.concatenate(pieces + [np.zeros(4800, np.int16)]), 8000)
    return path, [u.text for u in items]


@pytest.fixture(scope="module")
def bias(model, phrase_call):
    lm = NgramLM(estimate(count_ngrams([t.split() for t in phrase_call[1]] * 2, 2)).entries)
    return model.decoding_bias(hotwords=list(RARE_PHRASES), lm=lm, lm_weight=0.3,
                               word_bonus=1.0)


def pieces(samples, seed):
    rng, i = random.Random(seed), 0
    while i < len(samples):
        n = rng.choice([1, 80, 333, 800, 4000])
        yield samples[i:i + n]
        i += n


@pytest.mark.parametrize("with_bias", [False, True])
def test_beam_streams_equal_offline_beam_decoding(model, phrase_call, bias, with_bias):
    path = phrase_call[0]
    used = bias if with_bias else None
    reference = decode_long(model, str(path), 8, 32, 0, mode="ctc_prefix_beam", beam_size=6,
                            bias=used)
    samples, rate = sf.read(str(path), dtype="int16")
    alone = model.stream(8, 32, 0, beam_size=6, bias=used, endpoint_silence=None)
    group = StreamGroup(TorchEngine(model), 8, 32, endpoint_silence=None)
    grouped = group.open(beam_size=6, bias=used)
    for piece in pieces(samples, seed=int(with_bias)):
        alone.accept_waveform(piece, rate)
        grouped.accept_waveform(piece, rate)
        group.run()
        assert isinstance(alone.partial(), str)
    for stream in (alone, grouped):
        result = stream.finish()
        assert result.ids == reference.ids
        assert [t.first for t in result.tokens] == [t.first for t in reference.tokens]
        assert result.frame_ids == reference.frame_ids  # the greedy ids drive endpoints


def test_beam_stream_finals_recall_the_phrases(model, phrase_call, bias):
    path, texts = phrase_call
    samples, rate = sf.read(str(path), dtype="int16")

    def finals(used):
        stream = model.stream(8, 32, 0, beam_size=8, bias=used, endpoint_silence=0.4)
        out = []
        for piece in pieces(samples, seed=3):
            stream.accept_waveform(piece, rate)
            out += stream.pop_finals()
        result = stream.finish()
        out += stream.pop_finals()
        assert " ".join(f["text"] for f in out) == result.text
        for f, g in zip(out, out[1:]):
            assert f["end"] <= g["start"]
        return out

    plain, boosted = finals(None), finals(bias)
    said = [p for t in texts for p in RARE_PHRASES if p in t]
    recalled = lambda out: sum(p in " ".join(f["text"] for f in out) for p in said)  # noqa
    assert len(boosted) >= 3 and recalled(boosted) >= max(recalled(plain) + 1, 3)


def test_the_search_is_chosen_before_the_audio(model):
    stream = model.stream(8, 32, 0)
    stream.accept_waveform(np.zeros(16000, np.int16), 16000)
    stream.accept_waveform((np.random.default_rng(0).standard_normal(16000) * 3000)
                           .astype(np.int16), 16000)
    assert stream.frame_ids
    with pytest.raises(StreamError, match="before the first audio"):
        stream.use_search(PrefixBeamSearch(4))
