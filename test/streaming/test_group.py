"""Streams stepped together (one chunk of each per forward) give exactly what each gives alone
and what offline long-form decoding gives: at 8 and 16 kHz, streams joining and finishing at
different times, pieces of random sizes, a stream whose caller goes away."""
import random

import numpy as np
import pytest
import soundfile as sf

from chunkformer.decoding.endless import decode_long
from chunkformer.model import ChunkFormerModel
from chunkformer.streaming.group import StreamGroup, TorchEngine
from chunkformer.streaming.stream import StreamError


@pytest.fixture(scope="module")
def model(default_model):
    return ChunkFormerModel.from_pretrained(default_model).eval()


@pytest.mark.parametrize("context", [(8, 32), (4, 16)])
def test_batched_streams_equal_long_form_decoding(model, vi_speech, real_recording, context):
    files = [str(real_recording)] + [str(p) for p, _ in vi_speech[:4]]
    references = [decode_long(model, f, *context, 0) for f in files]
    group = StreamGroup(TorchEngine(model), *context, endpoint_silence=None, max_batch=3)
    rng = random.Random(7)
    calls = []
    for k, f in enumerate(files):
        samples, rate = sf.read(f, dtype="int16" if k % 2 else "float32")
        calls.append({"samples": samples, "rate": rate, "at": 0, "stream": None,
                      "joins": k})  # stream k joins at round k
    results, largest_batch, rounds = {}, 0, 0
    while len(results) < len(files):
        for k, c in enumerate(calls):
            if k in results or rounds < c["joins"]:
                continue
            if c["stream"] is None:
                c["stream"] = group.open()
            n = rng.choice([160, 800, 1601, 4000, 9000])
            c["stream"].accept_waveform(c["samples"][c["at"]:c["at"] + n], c["rate"])
            c["at"] += n
        ready = sum(1 for s in group.streams if s.ready_chunks())
        largest_batch = max(largest_batch, min(ready, 3))
        group.step()
        for k, c in enumerate(calls):
            if k not in results and c["stream"] is not None and c["at"] >= len(c["samples"]):
                results[k] = c["stream"].finish()
                assert c["stream"] not in group.streams  # finishing leaves the group
        rounds += 1
    assert largest_batch > 1  # chunks of several streams went through one forward
    for k, reference in enumerate(references):
        assert results[k].frame_ids == reference.frame_ids, files[k]
        assert results[k].text == reference.text


def test_group_streams_have_endpoints_and_partials(model, vi_speech):
    import torch
    import torchaudio

    pieces = []
    for path, _ in vi_speech[:3]:
        x, rate = sf.read(str(path), dtype="float32")
        pieces += [np.zeros(rate, np.float32), x]
    wave = torchaudio.functional.resample(torch.from_numpy(np.concatenate(pieces)), 16000, 8000)
    group = StreamGroup(TorchEngine(model), 8, 32, endpoint_silence=0.5)
    a, b = group.open(), group.open()
    finals = {id(a): [], id(b): []}
    for i in range(0, wave.numel(), 800):
        for s in (a, b):
            s.accept_waveform(wave[i:i + 800], 8000)
        group.run()
        for s in (a, b):
            finals[id(s)] += s.pop_finals()
    assert group.streams == [a, b]
    ta, tb = a.finish(), b.finish()
    finals[id(a)] += a.pop_finals()
    finals[id(b)] += b.pop_finals()
    assert ta.frame_ids == tb.frame_ids  # the same audio side by side in one batch
    assert len(finals[id(a)]) == 3  # one utterance per sentence, a second of silence apart
    assert [f["text"] for f in finals[id(a)]] == [f["text"] for f in finals[id(b)]]
    assert " ".join(f["text"] for f in finals[id(a)]) == ta.text
    assert group.streams == []


def test_a_stream_that_goes_away_leaves_the_others_alone(model, vi_speech):
    x, rate = sf.read(str(vi_speech[0][0]), dtype="int16")
    group = StreamGroup(TorchEngine(model), 8, 32)
    gone, kept = group.open(), group.open()
    gone.accept_waveform(x[:len(x) // 3], rate)
    kept.accept_waveform(x, rate)
    group.run()
    group.close(gone)
    assert group.streams == [kept]
    assert kept.finish().frame_ids == decode_long(model, str(vi_speech[0][0]), 8, 32, 0).frame_ids
    with pytest.raises(StreamError, match="chunk_size > 0"):
        StreamGroup(TorchEngine(model), 0, 32)
