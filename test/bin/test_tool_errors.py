"""Every tool at its door: a missing input, a missing model folder, a bad config key or option
end in one ``error: ...`` line (or argparse's usage error) and a non-zero exit, never a
traceback."""
import importlib
import json

import pytest

MISSING_MODEL = "/nonexistent/model"
MISSING_LIST = "/nonexistent/data.list"


@pytest.fixture(scope="module")
def good_list(tmp_path_factory, reference_dir):
    path = tmp_path_factory.mktemp("lists") / "data.list"
    wav = reference_dir / "wavs" / "utt1_tts16k.flac"
    path.write_text(json.dumps({"key": "a", "wav": str(wav), "txt": "a"}) + "\n")
    return str(path)


def cases(out, good, model):
    """(tool, argv, what the one line must say) for every tool."""
    o = str(out)
    return [
        ("average_model", ["--exp_dir", "/nonexistent/exp", "--out", o], "no checkpoints"),
        ("build_lm", ["--text", MISSING_LIST, "--output", f"{o}/lm.arpa"], MISSING_LIST),
        ("tune_decoding", ["--model_dir", MISSING_MODEL, "--data", good, "--lm", MISSING_LIST,
                           "--output_dir", o], "no such model folder"),
        ("tune_decoding", ["--model_dir", model, "--data", good, "--lm", MISSING_LIST,
                           "--output_dir", o], MISSING_LIST),
        ("build_vocab", ["--data", MISSING_LIST, "--kind", "char", "--output_dir", o],
         MISSING_LIST),
        ("build_vocab", ["--data", good, "--kind", "released", "--model_dir", MISSING_MODEL,
                         "--output_dir", o], MISSING_MODEL),
        ("call_outcome", ["fit", "--turns", MISSING_LIST, "--scores", MISSING_LIST, "--calls",
                          MISSING_LIST, "--output", o], MISSING_LIST),
        ("compute_cmvn", ["--data", MISSING_LIST, "--output", o], MISSING_LIST),
        ("compute_fbank", ["--data", MISSING_LIST, "--output_dir", o], MISSING_LIST),
        ("evaluate_heads", ["--model_dir", MISSING_MODEL, "--data", good, "--output_dir", o],
         "no such model folder"),
        ("evaluate_heads", ["--model_dir", model, "--data", MISSING_LIST, "--output_dir", o],
         MISSING_LIST),
        ("export_onnx", ["--model_dir", MISSING_MODEL, "--output_dir", o],
         "no such model folder"),
        ("serve", ["--model_dir", MISSING_MODEL, "--port", "0"], "no such model folder"),
        ("serve", ["--onnx_dir", "/nonexistent/onnx", "--port", "0"],
         "/nonexistent/onnx/full.onnx: no such file"),
        ("serve", ["--model_dir", model, "--port", "0", "--hotwords", MISSING_LIST],
         "need a beam"),
        ("serve", ["--model_dir", model, "--port", "0", "--beam_size", "4", "--lm",
                   MISSING_LIST], MISSING_LIST),
        ("stream_client", ["--wav", "/nonexistent/a.wav"], "/nonexistent/a.wav"),
        ("extract_embeddings", ["--model_dir", MISSING_MODEL, "--data", good, "--output_dir",
                                o], "no such model folder"),
        ("extract_embeddings", ["--model_dir", model, "--data", MISSING_LIST, "--output_dir",
                                o], MISSING_LIST),
        ("make_shards", ["--data", MISSING_LIST, "--output_dir", o], MISSING_LIST),
        ("prelabel", ["--index", MISSING_LIST, "--k", "2", "--output", o], MISSING_LIST),
        ("prepare_data", ["--data", MISSING_LIST, "--output", o], MISSING_LIST),
        ("recognize", ["--model_dir", MISSING_MODEL, "--data", good, "--output_dir", o],
         "no such model folder"),
        ("recognize", ["--model_dir", model, "--data", MISSING_LIST, "--output_dir", o],
         MISSING_LIST),
        ("report", ["--model_dir", MISSING_MODEL, "--data", good, "--output", o],
         "no such model folder"),
        ("report", ["--model_dir", model, "--data", MISSING_LIST, "--output", o], MISSING_LIST),
        ("score", ["--hyp", MISSING_LIST, "--ref", good], MISSING_LIST),
        ("score_calls", ["--hyp", MISSING_LIST, "--turns", good], MISSING_LIST),
        ("score_calls", ["--hyp", good, "--turns", good], "turn a: needs start and end"),
        ("segment_recordings", ["--model_dir", MISSING_MODEL, "--data", good, "--output_dir",
                                o], "no such model folder"),
        ("segment_recordings", ["--model_dir", model, "--data", MISSING_LIST, "--output_dir",
                                o], MISSING_LIST),
        ("split_data", ["--data", MISSING_LIST, "--train", o, "--dev", o], MISSING_LIST),
        ("synthesize_corpus", ["--out_dir", o, "--num_utts", "x"], None),
        ("train", ["--config", "/nonexistent/c.yaml", "--exp_dir", o], "/nonexistent/c.yaml"),
        ("train", ["--config", "conf/train_default.yaml", "--exp_dir", o, "--override",
                   f"train.init_from={MISSING_MODEL}"], "no such model folder"),
        ("train", ["--config", "conf/train_default.yaml", "--exp_dir", o, "--override",
                   f"data.train={MISSING_LIST}"], MISSING_LIST),
        ("train", ["--config", "conf/train_default.yaml", "--exp_dir", o, "--override",
                   "optim.lrr=0.1"], "optim.lrr is not a known key: did you mean optim.lr?"),
        ("train", ["--config", "conf/train_default.yaml", "--exp_dir", o, "--override",
                   "data.max_frame_in_batch=9"], "did you mean data.max_frames_in_batch?"),
        ("train", ["--config", "conf/train_default.yaml", "--exp_dir", o, "--override",
                   "train.max_step=9"], "did you mean train.max_steps?"),
    ]


def test_every_tool_answers_user_mistakes_in_one_line(tmp_path, good_list, ref_model_dir,
                                                      capsys, monkeypatch):
    import pathlib

    monkeypatch.chdir(pathlib.Path(__file__).resolve().parents[2])  # conf/ is relative
    tools = {t for t, _, _ in cases(tmp_path, good_list, ref_model_dir)}
    shipped = {p.stem for p in pathlib.Path("chunkformer/bin").glob("*.py")} - {
        "__init__", "common"}
    assert tools == shipped, f"tools without a door test: {shipped - tools}"
    for i, (tool, argv, says) in enumerate(cases(tmp_path / "out", good_list,
                                                 str(ref_model_dir))):
        main = importlib.import_module(f"chunkformer.bin.{tool}").main
        with pytest.raises(SystemExit) as stop:
            main(argv)
        err = capsys.readouterr().err
        if says is None:  # an argparse error: usage and one error line, status 2
            assert stop.value.code == 2 and "error:" in err.splitlines()[-1], (tool, err)
            continue
        message = stop.value.code
        assert isinstance(message, str) and message.startswith("error: "), (tool, message)
        assert "\n" not in message and says in message, (tool, argv, message)
        assert "Traceback" not in err
