"""The scoring tool: WER/CER of a decode on any subset of its references, normalised text."""
import json

from chunkformer.bin import score as score_tool
from chunkformer.decoding.metrics import score


def test_score_counts_only_shared_keys_and_normalises(tmp_path):
    hyps = {"a": "xin chào", "b": "số dư tài khoản", "c": "không có tham chiếu"}
    refs = {"a": "Xin chào!", "b": "số dư của tài khoản", "d": "không được giải mã"}
    line = score(hyps, refs, tmp_path / "errors.tsv")
    assert line == "WER 14.29 % [1 / 7]  CER 13.64 % [3 / 22]  (2 utterances)"
    report = (tmp_path / "errors.tsv").read_text(encoding="utf-8").splitlines()
    assert report[1].startswith("b\t0.2000\t") and report[2].startswith("a\t0.0000\t")
    assert score(hyps, {"z": "x"}) is None


def test_score_cli_on_a_subset_list(tmp_path, capsys):
    (tmp_path / "text").write_text("a xin chào\nb số dư tài khoản\n", encoding="utf-8")
    rows = [{"key": "b", "wav": "b.wav", "txt": "số dư của tài khoản", "duration": 1.0}]
    subset = tmp_path / "subset.list"
    subset.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows),
                      encoding="utf-8")
    score_tool.main(["--hyp", str(tmp_path / "text"), "--ref", str(subset),
                     "--report", str(tmp_path / "e.tsv")])
    assert capsys.readouterr().out == "WER 20.00 % [1 / 5]  CER 20.00 % [3 / 15]  (1 utterances)\n"
    (tmp_path / "other.list").write_text(json.dumps({"key": "z", "wav": "z.wav", "txt": "x"}))
    try:
        score_tool.main(["--hyp", str(tmp_path / "text"), "--ref", str(tmp_path / "other.list")])
    except SystemExit as e:
        assert "no utterance" in str(e.code)
    else:
        raise AssertionError("scoring with no shared key must fail")
