"""Hotwords and an LM on synthesised speech with the default recipe's model: rare phrases
recalled with the list and not without it, no false alarms on speech without them, n-best
output, and an LM from in-domain text lowering CER (recognize, build_lm, tune_decoding)."""
import json

import pytest

from chunkformer.bin.build_lm import main as build_lm
from chunkformer.bin.recognize import main as recognize
from chunkformer.bin.tune_decoding import main as tune_decoding
from chunkformer.data.synthetic import RARE_PHRASES, domain_text, plan_phrase_set, write_corpus

pytestmark = pytest.mark.usefixtures("sox")


@pytest.fixture(scope="module")
def phrase_set(tmp_path_factory):
    """14 utterances saying a rare phrase each, 14 test sentences that say none."""
    folder = tmp_path_factory.mktemp("phrases")
    write_corpus(folder, {"set": plan_phrase_set(RARE_PHRASES, 14, 14, seed=3)},
                 progress=False)
    return folder / "set"


def decode(model, data, out, *options):
    recognize(["--model_dir", str(model), "--data", str(data), "--output_dir", str(out),
               "--chunk_size", "0", "--mode", "ctc_prefix_beam", "--num_threads", "2",
               *options])
    return dict(line.rstrip("\n").split(" ", 1) for line in open(out / "text",
                                                                  encoding="utf-8"))


def phrase_counts(hyps, refs):
    """(phrases said and recognised, utterances without phrases where one was recognised)."""
    said = sum(any(f" {p} " in f" {hyps[k]} " and p in refs[k] for p in RARE_PHRASES)
               for k in refs if k.startswith("phrase"))
    false = sum(any(f" {p} " in f" {hyps[k]} " for p in RARE_PHRASES)
                for k in refs if k.startswith("plain"))
    return said, false


def test_hotwords_recall_rare_phrases(phrase_set, default_model, tmp_path):
    refs = {row["key"]: row["txt"] for row in map(json.loads, open(phrase_set / "data.list"))}
    hotwords = tmp_path / "hotwords.txt"
    hotwords.write_text("# bank products\n" + "".join(f"{p.title()}\n" for p in RARE_PHRASES),
                        encoding="utf-8")
    plain = decode(default_model, phrase_set / "data.list", tmp_path / "plain")
    boosted = decode(default_model, phrase_set / "data.list", tmp_path / "hot",
                     "--hotwords", str(hotwords), "--nbest", "3")
    without, false_without = phrase_counts(plain, refs)
    with_list, false_with = phrase_counts(boosted, refs)
    assert with_list >= without + 5, (without, with_list)
    assert false_with == false_without == 0
    rows = [json.loads(line) for line in open(tmp_path / "hot" / "nbest.jsonl")]
    assert [r["key"] for r in rows] == sorted(refs)
    for row in rows:
        best = row["nbest"]
        assert [b["rank"] for b in best] == list(range(1, len(best) + 1)) and len(best) <= 3
        assert best[0]["text"] == boosted[row["key"]]
        assert all(a["score"] >= b["score"] for a, b in zip(best, best[1:]))
        assert all(b["score"] == pytest.approx(b["ctc_score"] + b["bias"], abs=2e-4)
                   and b["bias"] == pytest.approx(b["hotwords"], abs=2e-4) for b in best)


def test_lm_from_in_domain_text_lowers_cer(phrase_set, default_model, tmp_path, capsys):
    text = tmp_path / "domain.txt"
    text.write_text("".join(f"{s}\n" for s in domain_text(3000, seed=5)), encoding="utf-8")
    lm = tmp_path / "lm.arpa"
    assert build_lm(["--text", str(text), "--order", "3", "--output", str(lm)]) == 0
    plain = tmp_path / "plain.list"
    plain.write_text("".join(line for line in open(phrase_set / "data.list")
                             if '"plain-' in line), encoding="utf-8")
    capsys.readouterr()
    assert tune_decoding(["--model_dir", str(default_model), "--data", str(plain), "--lm",
                          str(lm), "--output_dir", str(tmp_path / "tune"), "--lm_weights",
                          "0.3,0.5", "--word_bonuses", "1,2", "--num_threads", "2"]) == 0
    rows = [line.split("\t") for line in open(tmp_path / "tune" / "tuning.tsv")][1:]
    assert len(rows) == 5 and rows[0][:2] == ["-", "-"]
    without, best = float(rows[0][2]), min(float(r[2]) for r in rows[1:])
    assert best < without - 1.0, (without, best)
    printed = capsys.readouterr().out
    assert "best: --lm_weight" in printed
    weight, bonus = printed.split("best: --lm_weight ")[1].split(":")[0].split(" --word_bonus ")
    fused = decode(default_model, plain, tmp_path / "fused", "--lm", str(lm), "--lm_weight",
                   weight, "--word_bonus", bonus)
    assert len(fused) == 14


@pytest.mark.parametrize("options, message", [
    (["--mode", "ctc_greedy", "--hotwords", "HOT"], "need a beam mode"),
    (["--nbest", "20"], "--nbest 20 > --beam_size 10"),
    (["--lm", "missing.arpa"], "missing.arpa"),
    (["--hotwords", "EMPTY"], "no hotwords"),
])
def test_recognize_refuses_bad_decoding_options(phrase_set, default_model, tmp_path, options,
                                                message):
    (tmp_path / "hot.txt").write_text("hoa mai\n", encoding="utf-8")
    (tmp_path / "empty.txt").write_text("# nothing\n", encoding="utf-8")
    options = [str(tmp_path / "hot.txt") if o == "HOT" else str(tmp_path / "empty.txt")
               if o == "EMPTY" else o for o in options]
    args = ["--model_dir", str(default_model), "--data", str(phrase_set / "data.list"),
            "--output_dir", str(tmp_path / "out"), "--mode", "ctc_prefix_beam", *options]
    if "--mode" in options:
        args = args[:-len(options) - 2] + options
    with pytest.raises(SystemExit, match=message):
        recognize(args)
