"""recognize CLI end to end: every input format, every mode, bad inputs, scoring, SRT."""
import json
import shutil
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf

from chunkformer.bin.recognize import main
from chunkformer.model import ChunkFormerModel


def _run(args):
    """Run in-process; return the exit code (0 when main returns)."""
    try:
        main([str(a) for a in args])
    except SystemExit as e:
        return e.code if isinstance(e.code, int) else 1
    return 0


def _text(path):
    return dict(line.rstrip("\n").split(" ", 1) for line in open(path, encoding="utf-8"))


@pytest.fixture(scope="module")
def corpus(tmp_path_factory, vi_speech):
    """A folder of real synthetic speech plus wav.scp, segments, text and data.list."""
    root = tmp_path_factory.mktemp("corpus")
    wavs = root / "wavs"
    wavs.mkdir()
    items = []
    for n, (path, text) in enumerate(vi_speech[:3]):
        dst = wavs / f"utt{n}.wav"
        shutil.copy(path, dst)
        items.append((f"utt{n}", dst, text))
    (root / "wav.scp").write_text("".join(f"{k} {p}\n" for k, p, _ in items))
    (root / "text").write_text("".join(f"{k} {t}\n" for k, _, t in items))
    (root / "data.list").write_text("".join(
        json.dumps({"key": k, "wav": str(p), "txt": t}, ensure_ascii=False) + "\n"
        for k, p, t in items))
    return root, items


def test_every_input_format_gives_the_same_text(ref_model_dir, corpus, tmp_path):
    root, items = corpus
    outs = {}
    for name, data in (("dir", root / "wavs"), ("scp", root / "wav.scp"),
                       ("list", root / "data.list")):
        assert _run(["--model_dir", ref_model_dir, "--data", data, "--output_dir",
                     tmp_path / name]) == 0
        outs[name] = _text(tmp_path / name / "text")
    assert outs["scp"] == outs["list"]
    assert sorted(outs["dir"].values()) == sorted(outs["scp"].values())
    assert _run(["--model_dir", ref_model_dir, "--data", items[0][1], "--output_dir",
                 tmp_path / "one"]) == 0
    assert list(_text(tmp_path / "one" / "text").values()) == [outs["scp"]["utt0"]]


def test_output_agrees_with_api(ref_model_dir, corpus, tmp_path):
    root, items = corpus
    assert _run(["--model_dir", ref_model_dir, "--data", root / "wav.scp", "--output_dir",
                 tmp_path, "--chunk_size", 16, "--left_context_size", 24,
                 "--right_context_size", 4]) == 0
    model = ChunkFormerModel.from_pretrained(ref_model_dir)
    api = model.batch_decode([p for _, p, _ in items], 16, 24, 4)
    assert [_text(tmp_path / "text")[k] for k, _, _ in items] == api


@pytest.mark.parametrize("mode", ["ctc_greedy", "ctc_prefix_beam", "attention_rescoring"])
def test_modes_write_results_and_scores(ref_model_dir, corpus, tmp_path, mode, capsys):
    root, items = corpus
    assert _run(["--model_dir", ref_model_dir, "--data", root / "wav.scp", "--output_dir",
                 tmp_path, "--mode", mode, "--beam_size", 4, "--srt"]) == 0
    out = capsys.readouterr().out
    assert "WER" in out and "CER" in out  # text beside wav.scp is the reference
    rows = [json.loads(x) for x in open(tmp_path / "result.jsonl", encoding="utf-8")]
    assert [r["key"] for r in rows] == [k for k, _, _ in items]
    for r in rows:
        assert set(r) >= {"key", "text", "words", "tokens", "segments"}
        assert all(t["start"] < t["end"] and "<" not in t["token"] for t in r["tokens"])
        for w in r["words"]:
            assert 0 <= w["start"] < w["end"]
    assert (tmp_path / "errors.tsv").exists()
    assert len(list((tmp_path / "srt").glob("*.srt"))) == len(items)


def test_segments_file_and_long_form_path(ref_model_dir, corpus, tmp_path):
    """Kaldi segments cut recordings; long recordings go chunk by chunk with the same result."""
    root, items = corpus
    data = tmp_path / "data"
    data.mkdir()
    shutil.copy(root / "wav.scp", data / "wav.scp")
    dur = sf.info(items[0][1]).duration
    (data / "segments").write_text(f"seg_a utt0 0.0 {dur / 2:.2f}\n"
                                   f"seg_b utt0 {dur / 2:.2f} {dur:.2f}\n")
    assert _run(["--model_dir", ref_model_dir, "--data", data, "--output_dir",
                 tmp_path / "seg"]) == 0
    assert set(_text(tmp_path / "seg" / "text")) == {"seg_a", "seg_b"}
    for threshold in (0.0, 1e9):  # everything long-form vs everything batched
        assert _run(["--model_dir", ref_model_dir, "--data", root / "wav.scp", "--output_dir",
                     tmp_path / f"t{threshold}", "--long_form_threshold", threshold]) == 0
    assert _text(tmp_path / "t0.0" / "text") == _text(tmp_path / "t1000000000.0" / "text")


def test_bad_inputs_are_skipped_and_counted(ref_model_dir, corpus, tmp_path, capsys):
    root, items = corpus
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "notaudio.wav").write_text("this is not audio\n")
    sf.write(bad / "empty.wav", np.zeros(0, dtype=np.int16), 16000)
    sf.write(bad / "short.wav", np.zeros(800, dtype=np.int16), 16000)
    nan = np.random.RandomState(0).randn(16000).astype(np.float32) * 0.1
    nan[100] = np.nan
    sf.write(bad / "nan.wav", nan, 16000, subtype="FLOAT")
    good = open(items[0][1], "rb").read()
    (bad / "truncated.wav").write_bytes(good[:30])
    lines = [f"{k} {p}" for k, p, _ in items[:2]]
    lines += [f"missing {bad / 'nope.wav'}"] + [f"{p.stem} {p}" for p in sorted(bad.iterdir())]
    (bad / "wav.scp").write_text("\n".join(lines) + "\n")
    assert _run(["--model_dir", ref_model_dir, "--data", bad / "wav.scp", "--output_dir",
                 tmp_path / "out"]) == 0
    out = capsys.readouterr().out
    assert "decoded 2, 6 skipped (" in out
    skipped = [line.split("\t") for line in open(tmp_path / "out" / "skipped.tsv")]
    assert sorted(s[0] for s in skipped) == sorted(
        ["missing", "notaudio", "empty", "short", "nan", "truncated"])
    assert all(len(s) == 3 and s[2].strip() for s in skipped)
    # all items bad → non-zero exit
    (bad / "wav.scp").write_text("\n".join(lines[2:]) + "\n")
    assert _run(["--model_dir", ref_model_dir, "--data", bad / "wav.scp", "--output_dir",
                 tmp_path / "out2"]) != 0


def test_bad_list_line_is_one_clear_error(ref_model_dir, tmp_path, capsys):
    (tmp_path / "data.list").write_text('{"key": "a", "wav": "a.wav"}\n{"key": "b"}\n')
    code = _run(["--model_dir", ref_model_dir, "--data", tmp_path / "data.list",
                 "--output_dir", tmp_path / "out"])
    assert code != 0


def test_bf16_autocast_run(ref_model_dir, corpus, tmp_path):
    root, _ = corpus
    assert _run(["--model_dir", ref_model_dir, "--data", root / "wav.scp", "--output_dir",
                 tmp_path, "--dtype", "bf16", "--long_form_threshold", 0]) == 0
    assert len(_text(tmp_path / "text")) == 3


def test_console_entry_point_runs(ref_model_dir, corpus, tmp_path):
    root, items = corpus
    r = subprocess.run([sys.executable, "-m", "chunkformer.bin.recognize", "--model_dir",
                        str(ref_model_dir), "--data", str(items[1][1]), "--output_dir",
                        str(tmp_path)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "text").read_text().startswith(items[1][0])


@pytest.mark.parametrize("mode", ["hash", "omit"])
def test_key_mode_keeps_call_ids_out_of_every_file_and_log(ref_model_dir, corpus, tmp_path,
                                                           mode, capsys, caplog):
    """Ids that carry phone numbers appear nowhere (files, stdout, logs); results still join."""
    from chunkformer.data.manifest import display_key

    root, items = corpus
    ids = [f"call_0912345{n:03d}" for n in range(len(items))]
    missing = "call_0987654321"
    (root / "calls.list").write_text("".join(
        json.dumps({"key": k, "wav": str(p), "txt": t}, ensure_ascii=False) + "\n"
        for k, (_, p, t) in zip(ids, items)) + json.dumps(
        {"key": missing, "wav": str(root / f"{missing}.wav"), "txt": "x"}) + "\n")
    out = tmp_path / mode
    with caplog.at_level("INFO"):
        assert _run(["--model_dir", ref_model_dir, "--data", root / "calls.list",
                     "--output_dir", out, "--key_mode", mode, "--srt"]) == 0
    printed = capsys.readouterr()
    shown = [p.read_text(encoding="utf-8") for p in out.rglob("*") if p.is_file()]
    shown += [printed.out, printed.err, caplog.text, *(p.name for p in out.rglob("*"))]
    assert not any("0912345" in s or "0987654321" in s for s in shown)
    names = ([display_key(k, "hash") for k in ids] if mode == "hash"
             else [str(n) for n in range(1, len(ids) + 1)])
    assert sorted(_text(out / "text")) == sorted(names)
    assert [json.loads(line)["key"] for line in open(out / "result.jsonl")] == names
    assert sorted(p.stem for p in (out / "srt").iterdir()) == sorted(names)
    rows = [line.rstrip("\n").split("\t") for line in open(out / "skipped.tsv")]
    expected = display_key(missing, mode)
    assert [r[0] for r in rows] == [expected] and rows[0][2] == "file not found"
    assert "WER" in printed.out and (out / "errors.tsv").exists()  # refs joined by name


def test_rescoring_weights_reach_every_path(ref_model_dir, corpus, tmp_path):
    """--ctc_weight changes attention rescoring, and the long-form path and the Python API
    (batch_decode, endless_decode) give the same text as the batch path for the same weight."""
    root, items = corpus
    model = ChunkFormerModel.from_pretrained(ref_model_dir)
    paths = [p for _, p, _ in items]
    texts = {}
    for w in (0.0, 100.0):
        common = ["--model_dir", ref_model_dir, "--data", root / "wav.scp", "--mode",
                  "attention_rescoring", "--beam_size", 10, "--ctc_weight", w]
        assert _run([*common, "--output_dir", tmp_path / f"b{w}"]) == 0
        assert _run([*common, "--output_dir", tmp_path / f"l{w}",
                     "--long_form_threshold", 0]) == 0
        batch, long = _text(tmp_path / f"b{w}" / "text"), _text(tmp_path / f"l{w}" / "text")
        assert batch == long
        texts[w] = [batch[k] for k, _, _ in items]
        kw = dict(mode="attention_rescoring", beam_size=10, ctc_weight=w)
        assert model.batch_decode(paths, **kw) == texts[w]
        assert [model.endless_decode(p, return_timestamps=False, **kw) for p in paths] == \
            texts[w]
    assert texts[0.0] != texts[100.0]  # the weight matters on these random weights
