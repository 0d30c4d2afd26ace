"""Endless long-form decoding: reference equality, cache hand-over, bounded segments."""
import numpy as np
import pytest
import torch

from chunkformer.decoding.endless import decode_long, encode_long, segment_plan
from chunkformer.decoding.transcript import Transcript, greedy_tokens


class ArrayStream:
    """Fbank frames served from memory (to isolate the encoder from audio reading)."""

    def __init__(self, feats):
        self.feats, self.num_frames = feats, feats.shape[0]

    def read(self, a, b):
        return self.feats[a:b]


def _encode(model, stream, ctx, tbd):
    with torch.no_grad():
        return torch.cat([e for _, e in encode_long(model, stream, *ctx, tbd)])


def test_endless_matches_reference(ref_model, reference):
    stream = ArrayStream(torch.from_numpy(reference["fbank_long"]))
    plan = list(segment_plan(stream.num_frames, 64, 128, 128, 4, 7, 11))
    assert len(plan) == 6  # the reference's 6 segments
    enc = _encode(ref_model, stream, (64, 128, 128), 11)
    assert np.abs(enc.numpy() - reference["endless_enc"]).max() <= 1e-4
    one = _encode(ref_model, stream, (64, 128, 128), 14400)
    assert np.abs(one.numpy() - reference["endless_enc"]).max() <= 1e-4  # one segment == six
    ids = ref_model.ctc_log_probs(enc).argmax(-1).numpy()
    assert (ids != reference["endless_ids"]).sum() <= 2


def test_endless_from_file_and_segments_match_reference(ref_model, reference, reference_dir, ref_meta):
    result = decode_long(ref_model, reference_dir / "wavs" / "long.flac", 64, 128, 128, 11)
    assert len(result.frame_ids) == len(reference["endless_ids"])
    segs = result.segments(0.5)
    theirs = ref_meta["endless_segments"]
    assert [(s["start"], s["end"]) for s in segs] == [(s["start"], s["end"]) for s in theirs]
    # text: the correct collapse of the reference's own frame ids, segment by segment
    expected = Transcript(greedy_tokens(reference["endless_ids"].tolist()), ref_model.vocab,
                          frame_ids=reference["endless_ids"].tolist()).segments(0.5)
    assert [s["decode"] for s in segs] == [s["decode"] for s in expected]


def test_collapse_keeps_tokens_separated_by_blank(ref_model):
    """Reference long-form text drops `a ∅ a` to `a` (spec §11); ours keeps both."""
    frames = [5, 5, 0, 5, 0, 0, 7, 7, 7, 0, 7]
    tokens = greedy_tokens(frames)
    assert [t.id for t in tokens] == [5, 5, 7, 7]
    assert [(t.first, t.last) for t in tokens] == [(0, 1), (3, 3), (6, 8), (10, 10)]
    seg = Transcript(tokens, None, frame_ids=frames).segments(0.5)
    assert seg[0]["decode"] == "5 5 7 7"


@pytest.mark.parametrize("ctx,tbd", [((64, 128, 128), 11), ((16, 24, 4), 3),
                                     ((8, 16, 16), 0.5), ((32, 0, 8), 1e-3)])
def test_endless_equals_one_chunked_pass(ref_model, ctx, tbd):
    """Any number of segments — even budgets below one chunk, which crash upstream — gives
    the masked batch over the whole utterance."""
    torch.manual_seed(0)
    feats = torch.randn(3001, 80) * 4 + 8
    stream = ArrayStream(feats)
    n_seg = len(list(segment_plan(3001, *ctx, 4, 7, tbd)))
    assert n_seg >= 3 or tbd == 11
    enc = _encode(ref_model, stream, ctx, tbd)
    with torch.no_grad():
        whole = ref_model.encoder.forward_list([feats], *ctx)[0]
    assert enc.shape == whole.shape
    assert (enc - whole).abs().max() <= 2e-5


def test_segment_size_does_not_grow_with_audio():
    sizes = {}
    for minutes in (10, 60, 600):
        frames = minutes * 6000
        plan = list(segment_plan(frames, 64, 128, 128, 17, 7, 1800))
        sizes[minutes] = max(s.stop - s.start for s in plan)
        assert plan[-1].stop == frames and plan[0].start == 0
        assert all(b.start - a.start == 8 * a.keep for a, b in zip(plan, plan[1:]))
    assert sizes[60] == sizes[600]  # bounded by the budget + look-ahead, not by the audio


def test_chunk_size_must_be_positive():
    with pytest.raises(ValueError, match="chunk_size"):
        list(segment_plan(1000, 0, 128, 128, 4, 7, 1800))


def test_file_stream_equals_in_memory(ref_model, vi_speech):
    """Decoding a path (streamed from disk) equals decoding the loaded waveform."""
    from chunkformer.data.audio import load_audio
    path = vi_speech[0][0]
    a = decode_long(ref_model, path, 16, 24, 4, 1)
    b = decode_long(ref_model, load_audio(path).numpy() / 32768, 16, 24, 4, 1,
                    sample_rate=16000)
    assert a.frame_ids == b.frame_ids and a.text == b.text


@pytest.mark.parametrize("max_span", [7, 20, 375])
def test_spans_do_not_change_greedy_and_bound_search(ref_model, monkeypatch, max_span):
    """CTC frames are searched in spans cut at blank frames: greedy output is unchanged by the
    cuts, and beam search never sees more than MAX_SPAN_FRAMES frames at once."""
    import chunkformer.decoding.spans as endless
    monkeypatch.setattr(endless, "MAX_SPAN_FRAMES", max_span)
    torch.manual_seed(3)
    stream = ArrayStream(torch.randn(2500, 80) * 4 + 8)
    with torch.no_grad():
        enc = _encode(ref_model, stream, (16, 24, 4), 2)
        log_probs = ref_model.ctc_log_probs(enc)
    seen = []
    real_search = endless.search
    monkeypatch.setattr(endless, "search", lambda m, e, ids, mode, *a, **k: (
        mode != "ctc_greedy" and seen.append(len(e))) or real_search(m, e, ids, mode, *a, **k))
    results = {}
    for mode in ("ctc_greedy", "ctc_prefix_beam"):
        spans = endless.SpanSearch(ref_model, mode, 4)
        for a in range(0, len(enc), 50):  # arrives in pieces, like segments
            spans.add(enc[a:a + 50])
        spans.finish()
        results[mode] = spans.tokens
    whole = greedy_tokens(log_probs.argmax(-1).tolist())
    assert [(t.id, t.first, t.last) for t in results["ctc_greedy"]] == \
        [(t.id, t.first, t.last) for t in whole]
    assert seen and max(seen) <= max_span and sum(seen) == len(enc)
    firsts = [t.first for t in results["ctc_prefix_beam"]]
    assert firsts == sorted(firsts) and firsts[-1] < len(enc)
