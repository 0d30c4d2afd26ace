"""egs/bestrq and egs/call_analytics end to end on a tiny default corpus and model (the
top-level recipe's, made once): every stage runs and leaves its results table. A few minutes
on 2 cores: with ``CHUNKFORMER_SLOW=1`` only, so the default suite stays under 15 minutes
(the pieces each recipe calls have their own fast tests)."""
import json
import os
import subprocess
from pathlib import Path

import pytest

from chunkformer.folders import load_model_folder

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.skipif(os.environ.get("CHUNKFORMER_SLOW") != "1",
                                reason="two recipes end to end (minutes): CHUNKFORMER_SLOW=1")
TINY = ["model.encoder_conf.num_blocks=1", "model.encoder_conf.output_size=32",
        "model.encoder_conf.linear_units=64", "data.num_workers=0"]


def _bash(script, *args, timeout=900):
    r = subprocess.run(["bash", str(script), *map(str, args)], capture_output=True, text=True,
                       timeout=timeout)
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-4000:]
    return r.stdout + r.stderr


@pytest.fixture(scope="module")
def default(tmp_path_factory):
    root = tmp_path_factory.mktemp("default")
    _bash(ROOT / "run.sh", "--install", "false", "--nj", "1", "--num_train", "40",
          "--num_dev", "12", "--num_test", "8", "--vocab_size", "100", "--max_steps", "3",
          "--average_num", "1", "--train_procs", "1", "--data_dir", root / "data",
          "--exp_dir", root / "exp", "--overrides", " ".join(TINY))
    return root


def test_bestrq_recipe(default, tmp_path):
    exp = tmp_path / "exp"
    out = _bash(ROOT / "egs" / "bestrq" / "run.sh", "--stage", "1", "--data_dir",
                default / "data", "--exp_dir", exp, "--labeled_fraction", "0.5", "--seeds",
                "0 1", "--ssl_steps", "3", "--ft_steps", "3", "--freeze_steps", "1",
                "--vocab_size", "90", "--train_procs", "1",
                "--ssl_overrides", " ".join(TINY), "--ft_overrides", " ".join(TINY))
    table = (exp / "results.md").read_text()
    assert table.count("| ssl |") == 2 and table.count("| scratch |") == 2
    assert "masked-prediction accuracy" in table and "for 2 seeds" not in out
    assert load_model_folder(exp / "ssl" / "final").quantizer.num_codebooks == 4
    audio = [json.loads(x) for x in open(default / "data" / "labeled_0.5" / "audio.list")]
    assert len(audio) == 40 and not any("txt" in r for r in audio)


def test_call_analytics_recipe(default, tmp_path):
    exp = tmp_path / "exp"
    _bash(ROOT / "egs" / "call_analytics" / "run.sh", "--data_dir", default / "data",
          "--model_dir", default / "exp" / "final", "--exp_dir", exp, "--max_steps", "3",
          "--num_calls", "10 12 6", "--k", "2", "--train_procs", "1",
          "--overrides", " ".join(TINY[:3]))
    table = (exp / "results.md").read_text()
    assert "| intent accuracy % |" in table and "| speaker EER % (lower is better) |" in table
    assert "Pre-labeling of 6 test calls" in table
    assert "| call outcome from turn scores: macro-F1 % |" in table
    assert "Always the majority outcome on these 6 test calls" in table
    why = (exp / "heads_trained" / "eval_turn_outcome" / "why.tsv").read_text().splitlines()
    assert len(why) == 1 + 6 * 4  # every turn of every test call
    assert (exp / "heads_trained" / "eval_utts" / "confusion_intent.png").is_file()
    page = (exp / "report" / "index.html").read_text()
    assert "call-test-0000" in page and 'class="turn-reasons"' in page
    calls = [json.loads(x) for x in open(exp / "data" / "calls_test.list")]
    assert len(calls) == 6 and all(c["outcome"] in ("escalate", "pays", "other") for c in calls)
    assert all(len(c["turns"]) == 4 for c in calls)
