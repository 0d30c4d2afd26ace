"""Forced alignment of transcripts to long recordings and segments cut at pauses: on emissions
made by hand (exact frames), and with a trained model on synthetic calls whose true turn times
are known (boundaries within 0.2 s)."""
import json
import subprocess
import sys

import pytest
import torch

from chunkformer.data.manifest import read_manifest
from chunkformer.data.synthetic_calls import plan_calls, write_calls
from chunkformer.data.vocab import Vocabulary
from chunkformer.decoding.alignment import (AlignedWord, AlignmentError, align_words,
                                            cut_at_pauses)

VOCAB = Vocabulary(["<blank>", "<unk>", "▁xin", "▁chào", "▁em", "ơi", "<sos/eos>"])


def emissions(frames, peaks, floor=-8.0):
    """(frames, V) log-probs: blank everywhere except token t at each (frame, t) of peaks."""
    lp = torch.full((frames, len(VOCAB.tokens)), floor)
    lp[:, 0] = 0.0
    for f, t in peaks:
        lp[f] = floor
        lp[f, t] = 0.0
    return lp.log_softmax(-1)


def test_words_land_on_their_frames_and_score_high():
    lp = emissions(40, [(3, 2), (4, 2), (8, 3), (25, 4), (26, 5)])
    words = align_words(lp, [2, 3, 4, 5], VOCAB)
    assert [(w.text, w.first, w.last) for w in words] == [("xin", 3, 4), ("chào", 8, 8),
                                                         ("emơi", 25, 26)]
    assert all(w.log_prob > -0.01 for w in words)
    wrong = align_words(lp, [4, 4, 3], VOCAB)  # a transcript the audio does not say
    assert min(w.log_prob for w in wrong) < -1.0
    with pytest.raises(AlignmentError, match="need 7 frames, the audio has 6"):
        align_words(lp[:6], [2, 2, 3, 3, 4], VOCAB)


def word(text, start, end, log_prob=0.0):
    return AlignedWord(text, round(start / 0.08), round(end / 0.08) - 1, log_prob, 5)


def test_cuts_at_pauses_within_the_longest_length():
    words = [word("a", 0.8, 1.2), word("b", 1.28, 1.6), word("c", 2.4, 2.8),
             word("d", 2.88, 3.2), word("e", 3.6, 4.0, -3.0)]
    segs = cut_at_pauses(words, min_pause=0.5, max_seconds=20, pad_start=0.15, pad_end=0.15,
                         offset=10.0)
    assert [s.text for s in segs] == ["a b", "c d e"]
    assert segs[0].start == pytest.approx(10.65) and segs[0].end == pytest.approx(11.75)
    assert segs[1].start == pytest.approx(12.25) and segs[1].end == pytest.approx(14.15)
    assert segs[0].score == pytest.approx(1.0) and segs[1].score < 0.5
    short = cut_at_pauses(words, min_pause=5.0, max_seconds=1.5, pad_start=0.0, pad_end=0.0)
    assert [s.text for s in short] == ["a b", "c d", "e"]  # longest inner pauses first
    assert all(s.end - s.start <= 1.5 for s in short)


def test_segments_of_synthetic_calls_match_the_true_turns(tmp_path, default_model):
    calls = plan_calls(3, "test", 11, set())
    write_calls(tmp_path, "test", calls, progress=False)
    folder = tmp_path / "test_calls"
    turns = read_manifest(folder / "turns_stereo.list")
    # one row per call and side: the side's turns as one transcript, as archives keep them
    rows = []
    for call in calls:
        for side in (0, 1):
            mine = sorted((t for t in turns if t.group == call.key and t.channel == side),
                          key=lambda t: t.start)
            rows.append({"key": f"{call.key}-ch{side}", "wav": mine[0].audio,
                         "txt": " ".join(t.text for t in mine), "channel": side,
                         "group": call.key})
    rows.append({"key": "wrong", "wav": turns[0].audio, "channel": 0,
                 "txt": "cảm ơn quý khách đã gọi đến ngân hàng " * 2})
    rows.append({"key": "too_long", "wav": turns[0].audio, "start": 0.0, "end": 1.0,
                 "channel": 0, "txt": " ".join(t.text for t in turns)})
    (tmp_path / "calls.list").write_text("".join(json.dumps(r, ensure_ascii=False) + "\n"
                                                 for r in rows))
    # full context, and chunk by chunk as for recordings over --full_context_seconds
    for name, extra in (("full", []), ("chunked", ["--full_context_seconds", "1",
                                                     "--chunk_size", "16",
                                                     "--left_context_size", "32",
                                                     "--right_context_size", "8"])):
        out = tmp_path / name
        r = subprocess.run([sys.executable, "-m", "chunkformer.bin.segment_recordings",
                            "--model_dir", str(default_model), "--data",
                            str(tmp_path / "calls.list"), "--output_dir", str(out),
                            "--min_score", "0.3", *extra], capture_output=True, text=True)
        assert r.returncode == 0, r.stderr[-3000:]
        segments = read_manifest(out / "segments.list")
        rejected = (out / "rejected.tsv").read_text()
        assert "too_long\t0.000\t1.000\t\t" in rejected and "frames" in rejected
        assert "wrong\t\t\t\ttranscript does not match the audio" in rejected
        assert not any(s.key.startswith("wrong") for s in segments)
        for seg in segments:
            same_side = [t for t in turns if t.group == seg.group and t.channel == seg.channel]
            best = min(same_side,
                       key=lambda t: abs(t.start - seg.start) + abs(t.end - seg.end))
            assert abs(best.start - seg.start) <= 0.2 and abs(best.end - seg.end) <= 0.2, \
                (name, seg, best)
            assert seg.audio == best.audio and seg.labels["score"] >= 0.3
        assert len(segments) >= 0.9 * len(turns), name  # nearly every turn is a segment
