"""The call report: analysis of a call (segments, speakers, timeline, outcome weights) and the
page rendered in headless Chromium (DOM and screenshot checked)."""
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf
import torch
from PIL import Image

from chunkformer.analytics.report import _cells, analyse_call, render_report
from chunkformer.config import load_yaml
from chunkformer.heads.multitask import build_heads_model
from chunkformer.model import ChunkFormerModel
from chunkformer.pretrained import read_encoder_state, save_folder, take_encoder

HEADS = {"intent": {"type": "classifier", "classes": ["greet", "pay", "lock"],
                    "pooling": "attentive"},
         "emotion": {"type": "classifier", "classes": ["calm", "angry"], "pooling": "mean",
                     "input": "weighted"},
         "outcome": {"type": "classifier", "classes": ["pays", "refuses"],
                     "pooling": "attentive"},
         "speaker": {"type": "speaker", "classes": ["a", "b", "c"], "embed_dim": 8}}


@pytest.fixture(scope="module")
def models(ref_model_dir, tmp_path_factory):
    """The reference ASR model (random weights: it says many words) and a task model on its
    encoder with four heads, saved as a folder."""
    asr = ChunkFormerModel.from_pretrained(ref_model_dir)
    cfg = load_yaml(ref_model_dir / "config.yaml")
    cfg = {k: v for k, v in cfg.items() if k in ("encoder", "encoder_conf", "input_dim",
                                                  "fbank_conf", "is_json_cmvn", "cmvn_file")}
    cfg.update(model="multitask", heads=HEADS)
    torch.manual_seed(0)
    task = build_heads_model(cfg, cmvn=asr.encoder.global_cmvn, cmvn_stats=asr.cmvn_stats)
    take_encoder(task, read_encoder_state(ref_model_dir)[0], ref_model_dir)
    folder = tmp_path_factory.mktemp("task") / "task"
    save_folder(task.eval(), folder)
    return asr, task.eval(), folder


def test_analysis_of_a_long_call(models, ref_meta, reference_dir):
    asr, task, _ = models
    wav = str(reference_dir / ref_meta["long_wav"])
    a = analyse_call("call 7", wav, asr, task, "outcome", ["intent", "emotion"], "speaker")
    assert len(a.segments) >= 3 and a.duration > 10
    words = [w["word"] for s in a.segments for w in s.words]
    # the segments split the transcript at silences (a word may be cut at a segment edge)
    assert "".join(words) == asr.batch_decode([wav], chunk_size=0)[0].replace(" ", "")
    assert all(s.start < s.end for s in a.segments)
    assert sum(s.weight for s in a.segments) == pytest.approx(1.0)
    assert {s.speaker for s in a.segments} == {0, 1}
    t = a.timeline["intent"]
    assert t["probs"].shape == (len(t["times"]), 3)
    assert np.allclose(t["probs"].sum(1), 1, atol=1e-5)
    assert t["times"][1] - t["times"][0] == pytest.approx(0.96)  # 1 s hop = 12 frames of 80 ms
    cells = _cells(t["times"], t["width"], a.duration)  # the heatmap tiles the whole call
    assert cells[0][0] == 0 and cells[-1][1] == a.duration
    assert all(b[0] == pytest.approx(c[1]) for c, b in zip(cells, cells[1:]))
    assert all(left <= s + t["width"] / 2 <= right for s, (left, right) in zip(t["times"], cells))
    assert a.outcome["label"] in ("pays", "refuses")
    assert a.outcome["method"] == "attention weights"
    # occlusion when the outcome head pools by mean: weights still a distribution
    occl = analyse_call("c", wav, asr, task, "emotion", [], None)
    assert occl.outcome["method"] == "occlusion"
    assert sum(s.weight for s in occl.segments) == pytest.approx(1.0) or all(
        s.weight == 0 for s in occl.segments)


def _chromium():
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        pytest.fail("chromium is required by the report test: apt-get install chromium",
                    pytrace=False)
    return path


def test_report_page_in_headless_chromium(models, ref_meta, reference_dir, vi_speech, tmp_path):
    _, _, folder = models
    calls = [{"key": "call-long", "wav": str(reference_dir / ref_meta["long_wav"])},
             {"key": "call<2>", "wav": str(vi_speech[1][0])}]
    (tmp_path / "calls.list").write_text("".join(json.dumps(c) + "\n" for c in calls))
    page = tmp_path / "report" / "index.html"
    r = subprocess.run([sys.executable, "-m", "chunkformer.bin.report", "--model_dir",
                        str(folder), "--asr_dir", str(reference_dir / "model"), "--data",
                        str(tmp_path / "calls.list"), "--output", str(page)],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-3000:]
    browser = _chromium()
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
             "--disable-dev-shm-usage", f"--user-data-dir={tmp_path / 'profile'}"]
    # tools/env.sh preloads jemalloc for training; Chromium aborts under that preload
    env = {k: v for k, v in os.environ.items() if k not in ("LD_PRELOAD", "MALLOC_CONF")}
    run = subprocess.run([browser, *flags, "--dump-dom", page.as_uri()], capture_output=True,
                         text=True, timeout=180, env=env)
    dom = run.stdout
    assert dom, f"chromium printed no DOM (exit {run.returncode}): {run.stderr[-2000:]}"
    assert dom.count('class="waveform"') == 2 and "&lt;2&gt;" in dom  # keys escaped
    assert dom.count('class="heatmap"') == 2
    # every why-link points at a segment of the page; the words carry their times
    targets = [part.split('"')[0] for part in dom.split('<a href="#')[1:]]
    assert len(targets) >= 4 and all(f'id="{t}"' in dom for t in targets)
    assert dom.count('class="w" data-start=') > 20
    assert "Predicted outcome:" in dom
    shot = tmp_path / "shot.png"
    subprocess.run([browser, *flags, f"--screenshot={shot}", "--window-size=1200,1400",
                    page.as_uri()], capture_output=True, timeout=180, env=env)
    img = np.asarray(Image.open(shot).convert("RGB")).astype(int)
    assert img.shape[0] == 1400 and img.std() > 20  # not a blank page
    # the intent rows of the heatmap are drawn in the first colour (blue, semi-transparent)
    blue = (img[..., 2] > img[..., 0] + 60) & (img[..., 2] > img[..., 1] + 20)
    assert blue.sum() > 500
    dark = (img.sum(-1) < 200).sum()  # waveform strokes and text
    assert dark > 2000


def test_render_escapes_and_lists_calls(models, vi_speech):
    asr, task, _ = models
    a = analyse_call("<b>x</b>", str(vi_speech[0][0]), asr, task, "outcome", ["intent"], None)
    page = render_report([a], title="T & T")
    assert "<b>x</b>" not in page and "&lt;b&gt;x&lt;/b&gt;" in page
    assert "<title>T &amp; T</title>" in page



def test_outcome_from_turn_scores_weighs_the_deciding_turn(models, ref_meta, reference_dir):
    """With the call's turns and a turn-outcome layer: turns are scored as evaluate_heads scores
    segment rows, the layer decides, and the weight lands on the segments of the turn that
    supplied the deciding score."""
    from chunkformer.analytics.report import score_turns, transcribe
    from chunkformer.analytics.turn_outcome import TurnOutcome
    from chunkformer.bin.evaluate_heads import predict
    from chunkformer.data.utterance import Utterance
    asr, task, _ = models
    wav = str(reference_dir / ref_meta["long_wav"])
    d = sf.info(wav).duration
    turns = [{"start": 0.0, "end": d / 3, "role": "bot"},
             {"start": d / 3, "end": 2 * d / 3, "role": "customer"},
             {"start": 2 * d / 3, "end": d, "role": "bot"}]
    scored = score_turns(task, wav, turns, ["emotion", "intent"])
    rows = [Utterance(f"t{i}", wav, None, t["start"], t["end"], t["end"] - t["start"])
            for i, t in enumerate(turns)]
    preds, _ = predict(task, rows, (0, 0, 0))
    for i, t in enumerate(scored):
        assert t.role == turns[i]["role"]
        assert np.allclose([t.scores["emotion"][c] for c in ("calm", "angry")],
                           preds[f"t{i}"]["emotion"].numpy(), atol=1e-5)
    angry = scored[1].scores["emotion"]["angry"]
    pay = max(scored[0].scores["intent"]["pay"], scored[2].scores["intent"]["pay"])
    # escalate rises with the customer's anger only; the bias makes it win by 1 nat
    layer = TurnOutcome(["escalate", "pays"], ["customer/emotion/angry", "bot/intent/pay"],
                        np.array([[4.0, 0.0], [0.0, 4.0]]),
                        np.array([1.0 - 4 * angry + 4 * pay, 0.0]))
    a = analyse_call("c", wav, asr, task, "outcome", ["intent"], None, turns=turns,
                     turn_outcome=layer)
    o = a.outcome
    assert o["method"] == "turn scores" and o["label"] == "escalate"
    assert o["probability"] == pytest.approx(1 / (1 + np.exp(-1.0)), abs=1e-4)
    assert o["reasons"] == [f"customer turn 2 ({d / 3:.1f}-{2 * d / 3:.1f} s): "
                            f"emotion angry {angry:.2f}"]
    # the transcript comes turn by turn: every segment lies in one turn and carries its role
    for s in a.segments:
        turn = next((t for t in turns
                     if t["start"] - 1e-3 <= s.start and s.end <= t["end"] + 1e-3), s)
        assert turn is not s, (s.start, s.end, turns)
        assert s.role == turn["role"] and s.speaker == ["bot", "customer"].index(s.role)
    middle = transcribe(asr, task, wav, turns[1:2])
    assert [(s.start, s.end, s.text) for s in middle] == [
        (s.start, s.end, s.text) for s in a.segments if s.role == "customer"]
    inside = [s for s in a.segments if s.role == "customer"]
    assert inside and sum(s.weight for s in a.segments) == pytest.approx(1.0)
    assert all(s.weight > 0 for s in inside)
    assert all(s.weight == 0 for s in a.segments if s.role == "bot")
    page = render_report([a])
    assert 'class="turn-reasons"' in page and "customer turn 2" in page
    assert '<span class="who" style="color:#ff7f0e">customer</span>' in page
    with pytest.raises(ValueError, match=r"needs head\(s\) \['sentiment'\]"):
        analyse_call("c", wav, asr, task, None, [], None, turns=turns, turn_outcome=TurnOutcome(
            ["a", "b"], ["customer/sentiment/neg"], np.zeros((2, 1)), np.zeros(2)))


def test_a_stereo_call_is_transcribed_side_by_side(models, vi_speech, tmp_path):
    """A two-channel call without known turns: each side decoded alone, its segments carry the
    side as role and speaker, in time order; the words are those of each side's own file."""
    import soundfile as sf

    asr, task, _ = models
    a, b = (sf.read(vi_speech[i][0], dtype="int16")[0] for i in (0, 2))
    left = np.concatenate([a, np.zeros(len(b) + 8000, np.int16)])
    right = np.concatenate([np.zeros(len(a) + 8000, np.int16), b])
    sf.write(tmp_path / "call.wav", np.stack([left, right], axis=1), 16000, subtype="PCM_16")
    analysis = analyse_call("stereo", str(tmp_path / "call.wav"), asr, task, "outcome", [],
                            None)
    assert {s.role for s in analysis.segments} == {"left", "right"}
    assert all(s.speaker == ("left", "right").index(s.role) for s in analysis.segments)
    assert [s.start for s in analysis.segments] == sorted(s.start for s in analysis.segments)
    for c, side in enumerate((left, right)):
        sf.write(tmp_path / f"side{c}.wav", side, 16000, subtype="PCM_16")
        alone = asr.batch_decode([str(tmp_path / f"side{c}.wav")], chunk_size=0)[0]
        words = [w["word"] for s in analysis.segments if s.role == ("left", "right")[c]
                 for w in s.words]
        assert "".join(words) == alone.replace(" ", "")
