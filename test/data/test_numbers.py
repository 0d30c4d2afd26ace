"""Numbers written out as Vietnamese speakers say them (written → spoken table), the regional
choices, text around numbers untouched, and prepare_data writing targets with them and saying
how many rows it verbalised."""
import json

import pytest

from chunkformer.bin import prepare_data
from chunkformer.data.numbers import (Style, cardinal, inverse_numbers, inverse_numbers_timed,
                                      verbalize_numbers)

TABLE = [  # written, spoken (north, "tư")
    ("0", "không"), ("4", "bốn"), ("5", "năm"), ("10", "mười"), ("11", "mười một"),
    ("14", "mười bốn"), ("15", "mười lăm"), ("20", "hai mươi"), ("21", "hai mươi mốt"),
    ("24", "hai mươi tư"), ("25", "hai mươi lăm"), ("31", "ba mươi mốt"), ("100", "một trăm"),
    ("101", "một trăm lẻ một"), ("105", "một trăm lẻ năm"), ("110", "một trăm mười"),
    ("115", "một trăm mười lăm"), ("999", "chín trăm chín mươi chín"),
    ("1.000", "một nghìn"), ("1.005", "một nghìn không trăm lẻ năm"),
    ("1.050", "một nghìn không trăm năm mươi"), ("10.500", "mười nghìn năm trăm"),
    ("1.200.000 đồng", "một triệu hai trăm nghìn đồng"),
    ("12.500.000 vnđ", "mười hai triệu năm trăm nghìn đồng"),
    ("1.000.001", "một triệu không trăm lẻ một"), ("2.000.000.000", "hai tỷ"),
    ("1.000.000.000.000", "một nghìn tỷ"),
    ("3.500.000.000 VND", "ba tỷ năm trăm triệu đồng"),
    ("2,5%", "hai phẩy năm phần trăm"), ("lãi 6.25%", "lãi sáu phẩy hai mươi lăm phần trăm"),
    ("1,05", "một phẩy không năm"), ("$50", "năm mươi đô la"), ("50 USD", "năm mươi đô la"),
    ("0912 345 678", "không chín một hai ba bốn năm sáu bảy tám"),
    ("0912.345.678", "không chín một hai ba bốn năm sáu bảy tám"),
    ("028-3823-4567", "không hai tám ba tám hai ba bốn năm sáu bảy"),
    ("số tài khoản 19036271234", "số tài khoản một chín không ba sáu hai bảy một hai ba bốn"),
    ("thẻ đuôi 0381", "thẻ đuôi không ba tám một"),
    ("15/3/2024", "ngày mười lăm tháng ba năm hai nghìn không trăm hai mươi tư"),
    ("30/4", "ngày ba mươi tháng tư"), ("1-12-2023",
                                        "ngày một tháng mười hai năm hai nghìn không trăm hai mươi ba"),
    ("14h30", "mười bốn giờ ba mươi phút"), ("lúc 8h", "lúc tám giờ"),
    ("14:05", "mười bốn giờ năm phút"), ("thứ 2", "thứ hai"), ("thứ 4", "thứ tư"),
    ("hạng thứ 1", "hạng thứ nhất"),
    ("chuyển 500.000 đồng cho số 0987654321 trước 17h ngày 5/6",
     "chuyển năm trăm nghìn đồng cho số không chín tám bảy sáu năm bốn ba hai một trước "
     "mười bảy giờ ngày năm tháng sáu"),
]


@pytest.mark.parametrize("written, spoken", TABLE)
def test_written_to_spoken(written, spoken):
    assert verbalize_numbers(written) == spoken


def test_regions_and_the_word_for_four():
    assert verbalize_numbers("105 và 1.000", region="south") == "một trăm linh năm và một ngàn"
    assert verbalize_numbers("24", four="bốn") == "hai mươi bốn"
    assert verbalize_numbers("1.004", region="south", four="bốn") == \
        "một ngàn không trăm linh bốn"
    with pytest.raises(ValueError, match="region"):
        verbalize_numbers("1", region="central")


def test_text_without_numbers_and_impossible_dates_and_times():
    text = "Xin chào, tôi muốn khóa thẻ!"
    assert verbalize_numbers(text) == text
    assert verbalize_numbers("45/13") != "ngày bốn mươi lăm tháng mười ba"
    assert verbalize_numbers("25:99") != "hai mươi lăm giờ chín mươi chín phút"
    for n in range(0, 100_000, 7):  # every output is words only, and distinct numbers differ
        words = cardinal(n).split()
        assert all(w.isalpha() for w in words)
    assert len({cardinal(n) for n in range(0, 20_000)}) == 20_000


def test_prepare_data_writes_spoken_targets_and_counts_them(vi_speech, tmp_path, capsys):
    wav = str(vi_speech[0][0])
    rows = [{"key": "a", "wav": wav, "txt": "Chuyển 1.200.000 đồng lúc 14h30"},
            {"key": "b", "wav": wav, "txt": "xin chào"},
            {"key": "c", "wav": wav, "txt": "số 0912 345 678"}]
    src = tmp_path / "in.list"
    src.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), "utf-8")
    prepare_data.main(["--data", str(src), "--output", str(tmp_path / "out.list")])
    assert "numbers written out in 2 rows" in capsys.readouterr().out
    out = [json.loads(line) for line in (tmp_path / "out.list").read_text("utf-8").splitlines()]
    assert out[0]["txt"] == "chuyển một triệu hai trăm nghìn đồng lúc mười bốn giờ ba mươi phút"
    assert out[0]["raw_text"] == rows[0]["txt"]  # as written, kept
    assert out[2]["txt"] == "số không chín một hai ba bốn năm sáu bảy tám"
    prepare_data.main(["--data", str(src), "--output", str(tmp_path / "keep.list"),
                       "--numbers", "keep", "--region", "south"])
    kept = [json.loads(line) for line in (tmp_path / "keep.list").read_text().splitlines()]
    assert kept[0]["txt"] == "chuyển 1 200 000 đồng lúc 14h30"
    assert "numbers written out in 0 rows" in capsys.readouterr().out


INVERSE = [  # spoken, written
    ("một triệu hai trăm nghìn đồng", "1.200.000 đồng"),
    ("hai phẩy năm phần trăm", "2,5%"), ("năm phần trăm", "5%"),
    ("một phẩy không năm", "1,05"), ("không phẩy năm triệu", "0,5 triệu"),
    ("không chín một hai ba bốn năm sáu bảy tám", "0912345678"),
    ("một trăm lẻ năm", "105"), ("một ngàn không trăm linh bốn", "1.004"),
    ("ba tỷ năm trăm triệu đồng", "3.500.000.000 đồng"), ("một nghìn tỷ", "1.000.000.000.000"),
    ("năm hai nghìn không trăm hai mươi tư", "năm 2024"), ("hai mươi mốt", "21"),
    ("tôi muốn mở một tài khoản", "tôi muốn mở một tài khoản"),  # a lone digit word stays
    ("anh có năm phút không", "anh có năm phút không"),
    ("chuyển năm trăm nghìn đồng lúc mười bảy giờ", "chuyển 500.000 đồng lúc 17 giờ"),
]


@pytest.mark.parametrize("spoken, written", INVERSE)
def test_spoken_to_written(spoken, written):
    assert inverse_numbers(spoken) == written


@pytest.mark.parametrize("region, four", [("north", "tư"), ("south", "bốn")])
def test_inverse_undoes_verbalisation(region, four):
    style = Style.of(region, four)
    for n in list(range(10, 3000)) + list(range(3000, 5_000_000_000, 7_777_777)):
        assert inverse_numbers(cardinal(n, style)) == f"{n:,}".replace(",", "."), n
    for written in ("1.200.000 đồng", "2,5%", "0912345678", "12.500.000 đồng", "6,25%"):
        assert inverse_numbers(verbalize_numbers(written, region, four)) == written


def test_recognize_writes_digits_and_scores_the_spoken_form(default_model, tmp_path, capsys):
    """A spoken amount and phone number (espeak-ng): with --inverse_numbers, text and segments
    carry digits, and the score against the spoken reference is unchanged."""
    import subprocess

    from chunkformer.bin import recognize

    spoken = "chuyển năm trăm nghìn đồng cho số không chín tám bảy sáu năm bốn"
    wav = tmp_path / "amount.wav"
    subprocess.run(["espeak-ng", "-v", "vi", "-s", "150", "-w", str(wav), spoken], check=True)
    data = tmp_path / "data.list"
    data.write_text(json.dumps({"key": "u", "wav": str(wav), "txt": spoken},
                               ensure_ascii=False) + "\n", encoding="utf-8")
    rows, scores = {}, {}
    for flag in ([], ["--inverse_numbers"]):
        out = tmp_path / ("inv" if flag else "plain")
        recognize.main(["--model_dir", str(default_model), "--data", str(data),
                        "--output_dir", str(out), "--chunk_size", "0", *flag])
        scores[bool(flag)] = capsys.readouterr().out.splitlines()[-1]
        rows[bool(flag)] = json.loads((out / "result.jsonl").read_text(encoding="utf-8"))
    plain, inverse = rows[False], rows[True]
    assert inverse["text"] == inverse_numbers(plain["text"]) != plain["text"]
    assert any(c.isdigit() for c in inverse["text"])
    assert [s["decode"] for s in inverse["segments"]] == \
        [inverse_numbers(s["decode"]) for s in plain["segments"]]
    assert "CER" in scores[True] and scores[True] == scores[False]


def test_timed_words_merge_into_one_timed_number():
    words = [{"word": w, "start": i * 0.5, "end": i * 0.5 + 0.4}
             for i, w in enumerate("chuyển năm trăm nghìn đồng cho một người".split())]
    merged = inverse_numbers_timed(words)
    assert [w["word"] for w in merged] == ["chuyển", "500.000", "đồng", "cho", "một", "người"]
    assert (merged[1]["start"], merged[1]["end"]) == (0.5, 1.9)  # its first start, last end
    assert merged[0] is words[0]


def test_report_shows_numbers_as_digits(default_model, tmp_path):
    """`report --inverse_numbers` on a call that says an amount (espeak-ng; the default model
    as ASR, a task model of heads on its encoder): the page shows the amount in digits."""
    import subprocess
    import sys

    import torch

    from chunkformer.config import load_yaml
    from chunkformer.heads.multitask import build_heads_model
    from chunkformer.model import ChunkFormerModel
    from chunkformer.pretrained import read_encoder_state, save_folder, take_encoder

    asr = ChunkFormerModel.from_pretrained(default_model)
    cfg = {k: v for k, v in load_yaml(default_model / "config.yaml").items()
           if k in ("encoder", "encoder_conf", "input_dim", "fbank_conf", "is_json_cmvn",
                    "cmvn_file")}
    cfg.update(model="multitask", heads={"outcome": {"type": "classifier",
                                                     "classes": ["pays", "refuses"]}})
    torch.manual_seed(0)
    task = build_heads_model(cfg, cmvn=asr.encoder.global_cmvn, cmvn_stats=asr.cmvn_stats)
    take_encoder(task, read_encoder_state(default_model)[0], default_model)
    save_folder(task.eval(), tmp_path / "task")
    wav = tmp_path / "call.wav"
    subprocess.run(["espeak-ng", "-v", "vi", "-s", "150", "-w", str(wav),
                    "anh chuyển giúp em năm trăm nghìn đồng nhé"], check=True)
    (tmp_path / "calls.list").write_text(json.dumps({"key": "c", "wav": str(wav)}) + "\n")
    pages = {}
    for flag in ([], ["--inverse_numbers"]):
        page = tmp_path / f"report{len(flag)}.html"
        r = subprocess.run([sys.executable, "-m", "chunkformer.bin.report", "--model_dir",
                            str(tmp_path / "task"), "--asr_dir", str(default_model), "--data",
                            str(tmp_path / "calls.list"), "--output", str(page), *flag],
                           capture_output=True, text=True)
        assert r.returncode == 0, r.stderr[-2000:]
        pages[bool(flag)] = page.read_text(encoding="utf-8")
    assert ">trăm</span>" in pages[False] and ">500.000</span>" in pages[True]
