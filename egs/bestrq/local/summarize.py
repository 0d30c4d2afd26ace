"""The results table of egs/bestrq: held-out CER per seed, from SSL vs from scratch, and the
pretraining's pretext statistics (masked-prediction accuracy, codebook perplexity).

    python local/summarize.py --exp_dir exp --seeds 0 1
"""
import argparse
import json
import re
from pathlib import Path

CHANNELS = ("all", "telephone", "wideband")


def cer(score_file: Path) -> float:
    """The CER (%) of a ``chunkformer.bin.score`` line."""
    match = re.search(r"CER\s+([0-9.]+)\s*%", score_file.read_text())
    if match is None:
        raise SystemExit(f"error: {score_file}: no CER in {score_file.read_text()!r}")
    return float(match.group(1))


def last_row(log: Path, split: str) -> dict:
    rows = [r for r in map(json.loads, open(log, encoding="utf-8")) if r["split"] == split]
    return rows[-1] if rows else {}


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--exp_dir", required=True)
    p.add_argument("--seeds", nargs="+", required=True)
    args = p.parse_args()
    exp = Path(args.exp_dir)
    lines = ["| seed | init | test CER | telephone | wideband | dev CER (last validation) |",
             "|---|---|---|---|---|---|"]
    wins = []
    for seed in args.seeds:
        got = {}
        for init in ("ssl", "scratch"):
            run = exp / f"{init}_seed{seed}"
            got[init] = [cer(run / "decode_test" / f"{c}.score") for c in CHANNELS]
            dev = last_row(run / "train_log.jsonl", "dev").get("cer", float("nan"))
            lines.append(f"| {seed} | {init} | " + " | ".join(f"{x:.2f}" for x in got[init])
                         + f" | {dev:.2f} |")
        wins.append(got["ssl"][0] < got["scratch"][0])
    ssl_dev = last_row(exp / "ssl" / "train_log.jsonl", "dev")
    ssl_train = last_row(exp / "ssl" / "train_log.jsonl", "train")
    lines += ["", f"Pretraining (step {ssl_dev.get('step')}): dev masked-prediction accuracy "
              f"{100 * ssl_dev.get('accuracy', float('nan')):.1f}%, loss "
              f"{ssl_dev.get('loss', float('nan')):.3f}, codebook perplexity "
              f"{ssl_dev.get('perplexity', float('nan')):.0f}; "
              f"train throughput {ssl_train.get('audio_sec_per_sec', float('nan')):.0f} audio s/s.",
              f"SSL initialisation beats scratch for {sum(wins)} of {len(wins)} seeds."]
    print("\n".join(lines))


if __name__ == "__main__":
    main()
