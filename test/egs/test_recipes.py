"""The recipes egs/commonvoice and egs/vlsp end to end (stages 0-5) on a tiny fake corpus in each
corpus's release layout, with a tiny model (--train_config), --max_steps 3 and --ngpu 1.

The Common Voice corpus has MP3 clips (written by soundfile: libsndfile >= 1.1 reads and writes
MP3) with train/dev/test.tsv in Common Voice's columns; the VLSP corpus has
{train,dev,test}/*.wav with same-named .txt transcripts (train in a sub-folder, as releases have).
"""
import csv
import os
import resource
import shutil
import subprocess
import time
from pathlib import Path

import pytest
import soundfile as sf
import torch
import yaml

from chunkformer.model import ChunkFormerModel


REPO = Path(__file__).resolve().parents[2]

# 12 sentences: 8 train, 2 dev, 2 test; (text, espeak-ng voice, speed)
SENTENCES = [
    ("xin chào quý khách", "vi", 120),
    ("tôi muốn kiểm tra số dư tài khoản", "vi+f3", 130),
    ("số tài khoản của tôi là một hai ba bốn", "vi-vn-x-south", 110),
    ("cảm ơn anh đã gọi đến ngân hàng", "vi-vn-x-central", 120),
    ("chị vui lòng đọc số thẻ", "vi+m3", 135),
    ("khoản vay được duyệt hôm nay", "vi", 100),
    ("tôi cần chuyển năm triệu đồng", "vi-vn-x-south+f2", 120),
    ("hẹn gặp lại quý khách", "vi-vn-x-central+m2", 130),
    ("ngân hàng xin kính chào", "vi+f4", 110),
    ("số dư của anh là hai triệu", "vi", 125),
    ("tôi muốn khóa thẻ", "vi-vn-x-south", 120),
    ("cảm ơn chị đã chờ máy", "vi+m1", 115),
]
SPLITS = {"train": range(0, 8), "dev": range(8, 10), "test": range(10, 12)}

TINY = {
    "model": {"model": "asr_model", "encoder": "chunkformer", "decoder": "transformer",
              "input_dim": 80, "output_dim": 10, "is_json_cmvn": True,
              "encoder_conf": {"output_size": 32, "attention_heads": 2, "linear_units": 64,
                               "num_blocks": 2, "cnn_module_kernel": 15, "dropout_rate": 0.0,
                               "positional_dropout_rate": 0.0, "attention_dropout_rate": 0.0},
              "decoder_conf": {"attention_heads": 2, "linear_units": 64, "num_blocks": 1,
                               "dropout_rate": 0.0, "positional_dropout_rate": 0.0},
              "model_conf": {"ctc_weight": 0.3, "lsm_weight": 0.1}},
    "tokenizer": {"path": None},
    "data": {"train": None, "dev": None, "cmvn": None, "max_frames_in_batch": 800,
             "num_workers": 0, "speed_perturb": None, "spec_augment": None},
    "optim": {"lr": 0.002, "warmup_steps": 1},
    "train": {"max_steps": 100, "seed": 0, "chunk_sizes": [-1, 8], "left_context_sizes": [8],
              "right_context_sizes": [2], "log_every": 1, "val_every": 1, "save_every": 1,
              "keep_last": 5},
}


@pytest.fixture(scope="module")
def speech(tmp_path_factory):
    """The 12 sentences as 22.05 kHz WAV files from espeak-ng → [(path, text)]."""
    espeak = shutil.which("espeak-ng")
    if espeak is None:
        pytest.fail("espeak-ng is required by the tests: apt-get install espeak-ng", pytrace=False)
    folder = tmp_path_factory.mktemp("recipe_speech")
    out = []
    for i, (text, voice, speed) in enumerate(SENTENCES):
        path = folder / f"s{i:02d}.wav"
        subprocess.run([espeak, "-v", voice, "-s", str(speed), "-w", str(path), text], check=True)
        out.append((path, text))
    return out


def _tiny_config(folder: Path) -> Path:
    path = folder / "tiny.yaml"
    path.write_text(yaml.safe_dump(TINY, allow_unicode=True), encoding="utf-8")
    return path


def _finetune_config(folder: Path) -> Path:
    """egs/vlsp/conf/finetune_large.yaml (optim with layer decay, frozen front end) with the
    data and step settings shrunk for a 3-step CPU run."""
    cfg = yaml.safe_load((REPO / "egs" / "vlsp" / "conf" / "finetune_large.yaml").read_text())
    cfg["data"].update(max_frames_in_batch=800, num_workers=0, pin_memory=False,
                       speed_perturb=None, spec_augment=None, min_duration=0.0)
    cfg["optim"]["warmup_steps"] = 1
    cfg["train"].update(amp="none", accum_steps=1, chunk_sizes=[-1, 8], left_context_sizes=[8],
                        right_context_sizes=[2], log_every=1, val_every=1, save_every=1)
    path = folder / "finetune.yaml"
    path.write_text(yaml.safe_dump(cfg, allow_unicode=True), encoding="utf-8")
    return path


def _run_recipe(recipe: str, work: Path, *options, stages=(0, 5)):
    """Copy the recipe into ``work`` (its data/ and exp/ land there) and run stages 0-5 →
    (wall seconds, CPU seconds of the recipe's processes)."""
    src = REPO / "egs" / recipe
    subprocess.run(["cp", "-r", str(src / "run.sh"), str(src / "conf"), str(src / "local"),
                    str(work)], check=True)
    # run.sh sources ../../tools/*.sh: give the copy the same relative layout
    (work.parent.parent / "tools").mkdir(exist_ok=True)
    for name in ("parse_options.sh", "env.sh", "asr_stages.sh"):
        subprocess.run(["cp", str(REPO / "tools" / name), str(work.parent.parent / "tools")],
                       check=True)
    t0, r0 = time.time(), resource.getrusage(resource.RUSAGE_CHILDREN)
    result = subprocess.run(["bash", "run.sh", "--stage", str(stages[0]),
                             "--stop_stage", str(stages[1]),
                             "--ngpu", "1", "--max_steps", "3", "--vocab_size", "60",
                             "--num_avg", "2", "--nj", "1", *map(str, options)],
                            cwd=work, capture_output=True, text=True)
    elapsed, r1 = time.time() - t0, resource.getrusage(resource.RUSAGE_CHILDREN)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-6000:]
    print("".join(line + "\n" for line in result.stdout.splitlines() if "(run.sh:" in line))
    return elapsed, (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)


def _check_outputs(work: Path, name: str, test_keys, dev=True):
    final = work / "exp" / name / "final"
    model = ChunkFormerModel.from_pretrained(final)
    assert len(model.vocab) > 2
    decodes = sorted((work / "exp" / name).glob("decode_test_*"))
    assert decodes and (decodes[0] / "text").is_file()
    lines = (decodes[0] / "text").read_text(encoding="utf-8").splitlines()
    assert sorted(line.split(maxsplit=1)[0] for line in lines) == sorted(test_keys)
    assert (decodes[0] / "scores.txt").read_text().startswith("WER")
    assert not dev or sorted((work / "exp" / name).glob("decode_dev_*"))


def _check_time(name, wall, cpu):
    """Under 60 s: the CPU time of all the recipe's processes is checked, since wall time on a
    shared machine depends on its load (on an idle 2-core machine wall time is below it)."""
    print(f"{name}: {wall:.1f} s wall, {cpu:.1f} s CPU, load average "
          f"{os.getloadavg()[0]:.1f}")
    assert cpu < 60, f"{name}: {cpu:.1f} CPU seconds"


def test_commonvoice_recipe(tmp_path, speech):
    cv = tmp_path / "cv-corpus" / "vi"
    (cv / "clips").mkdir(parents=True)
    header = ["client_id", "path", "sentence", "up_votes", "down_votes", "age", "gender",
              "accents", "variant", "locale", "segment"]
    keys = {}
    for split, idx in SPLITS.items():
        with open(cv / f"{split}.tsv", "w", encoding="utf-8", newline="") as f:
            w = csv.writer(f, delimiter="\t", quoting=csv.QUOTE_NONE, lineterminator="\n")
            w.writerow(header)
            for i in idx:
                wav, text = speech[i]
                name = f"common_voice_vi_{1000 + i}.mp3"
                x, sr = sf.read(wav)
                sf.write(cv / "clips" / name, x, sr, format="MP3")
                # Common Voice sentences keep case and punctuation: normalisation is tested too
                sentence = text.capitalize() + "."
                w.writerow([f"speaker{i % 3}", name, sentence, 2, 0, "", "", "", "", "vi", ""])
                keys.setdefault(split, []).append(name)
    work = tmp_path / "egs" / "commonvoice"
    work.mkdir(parents=True)
    elapsed = _run_recipe("commonvoice", work, "--cv_root", cv,
                          "--train_config", _tiny_config(tmp_path), "--name", "tiny")
    # Common Voice rows have no key column: keys come from the clip path (without extension)
    _check_outputs(work, "tiny", [Path(k).stem for k in keys["test"]])
    _check_time("commonvoice stages 0-5", *elapsed)


def _covering_release(ref_model_dir, texts, folder: Path) -> Path:
    """The reference-small release with the characters of ``texts`` that its vocabulary lacks
    (tone-marked vowels) written over its last word pieces: same weights and shapes, and every
    transcript encodable (the original encodes none of them, so training would see nothing)."""
    from chunkformer.data.text import normalize_text

    shutil.copytree(ref_model_dir, folder)
    units = [line.split()[0] for line in open(folder / "vocab.txt", encoding="utf-8")]
    missing = sorted({ch for t in texts for ch in normalize_text(t).replace(" ", "")} - set(units))
    units[-1 - len(missing):-1] = missing  # <sos/eos> stays last
    (folder / "vocab.txt").write_text("".join(f"{u} {i}\n" for i, u in enumerate(units)),
                                      encoding="utf-8")
    return folder


def test_vlsp_recipe(tmp_path, speech, ref_model_dir):
    root = tmp_path / "vlsp2020"
    keys = {}
    for split, idx in SPLITS.items():
        for i in idx:
            wav, text = speech[i]
            sub = root / split / (f"spk{i % 2}" if split == "train" else "")
            sub.mkdir(parents=True, exist_ok=True)
            x, sr = sf.read(wav)
            sf.write(sub / f"utt_{i:03d}.wav", x, sr, subtype="PCM_16")
            (sub / f"utt_{i:03d}.txt").write_text(text.upper() + "\n", encoding="utf-8")
            keys.setdefault(split, []).append(f"utt_{i:03d}")
    work = tmp_path / "egs" / "vlsp"
    work.mkdir(parents=True)
    # dev decoding is the same stage-5 code the Common Voice test runs: test only, to save time
    elapsed = _run_recipe("vlsp", work, "--vlsp_root", root, "--decode_sets", "test",
                          "--train_config", _tiny_config(tmp_path), "--name", "tiny")
    _check_outputs(work, "tiny", keys["test"], dev=False)
    _check_time("vlsp stages 0-5", *elapsed)

    # fine-tuning a released-layout model (the reference-small fixture stands in for the large
    # release) on the same data: released vocabulary with its OOV report, init_from, freezing
    release = _covering_release(ref_model_dir, [t for _, t in speech], tmp_path / "release")
    elapsed = _run_recipe("vlsp", work, "--pretrained", release, "--name", "ft",
                          "--train_config", _finetune_config(tmp_path), "--decode_sets", "test",
                          stages=(2, 5))
    assert (work / "data" / "lang_released" / "oov.tsv").is_file()
    _check_outputs(work, "ft", keys["test"], dev=False)
    start = ChunkFormerModel.from_pretrained(ref_model_dir).state_dict()
    final = ChunkFormerModel.from_pretrained(work / "exp" / "ft" / "final").state_dict()
    assert final.keys() == start.keys()
    for name in start:
        if name.startswith("encoder.embed."):  # frozen by finetune_large.yaml
            assert torch.equal(final[name], start[name]), name
    assert any(not torch.equal(final[n], start[n]) for n in start
               if n.startswith("encoder.encoders.") and start[n].is_floating_point())
    _check_time("vlsp fine-tuning stages 2-5", *elapsed)
