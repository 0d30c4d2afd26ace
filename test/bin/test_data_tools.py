"""Data tools end to end on a tiny corpus: prepare_data, compute_cmvn, compute_fbank,
build_vocab, split_data, make_shards (each run in-process through its ``main``)."""
import json
import shutil
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

import kaldiio
import torch

from chunkformer.bin import build_vocab, compute_cmvn, make_shards, prepare_data, split_data
from chunkformer.bin import compute_fbank as fbank_tool
from chunkformer.data.audio import load_audio
from chunkformer.data.dataset import read_feats_scp
from chunkformer.data.features import compute_fbank
from chunkformer.data.manifest import Utterance, display_key, read_manifest, write_manifest
from chunkformer.data.shards import iterate_shard, read_shard_list
from chunkformer.data.text import normalize_text
from chunkformer.data.tokenizer import load_tokenizer
from chunkformer.encoder.cmvn import read_cmvn


def _run(main, args):
    """Run a tool in-process; return its exit code (a message exit prints it to stderr)."""
    try:
        main([str(a) for a in args])
    except SystemExit as e:
        if isinstance(e.code, str):
            print(e.code, file=sys.stderr)
        return e.code if isinstance(e.code, int) else 1
    return 0


@pytest.fixture(scope="module")
def corpus(tmp_path_factory, vi_speech, sox):
    """A Kaldi data dir: 4 wideband files, one 8 kHz copy cut into 2 segments, one missing file,
    one corrupt file, a segment past the end of its file, and an empty transcript."""
    root = tmp_path_factory.mktemp("corpus")
    (root / "wav").mkdir()
    scp, text, segments = [], [], []
    for n, (path, words) in enumerate(vi_speech):
        shutil.copy(path, root / "wav" / f"r{n}.wav")
        scp.append(f"r{n} wav/r{n}.wav")
        segments.append(f"u{n} r{n} 0.0 {0.5 + 0.25 * n}")
        text.append(f"u{n} {words.capitalize()}, ạ!")
    sox(vi_speech[1][0], root / "wav" / "tel.wav", rate=8000)
    (root / "wav" / "bad.wav").write_bytes(b"RIFF0000WAVEjunk")
    scp += ["tel wav/tel.wav", "gone wav/gone.wav", "bad wav/bad.wav"]
    segments += ["t1 tel 0.1 0.9", "t2 tel 0.9 1.6", "t3 tel 60.0 61.0", "g1 gone 0 1",
                 "b1 bad 0 1", "e1 r0 0.5 1.0"]
    text += ["t1 số tài khoản", "t2 của tôi", "t3 ngoài file", "g1 mất file", "b1 hỏng",
             "e1 ..."]
    for name, lines in (("wav.scp", scp), ("segments", segments), ("text", text)):
        (root / name).write_text("".join(f"{line}\n" for line in lines), encoding="utf-8")
    return root


@pytest.fixture(scope="module")
def prepared(corpus, tmp_path_factory):
    out = tmp_path_factory.mktemp("prepared") / "data.list"
    assert _run(prepare_data.main, ["--data", corpus, "--output", out, "--require_text",
                                    "--key_mode", "hash", "--num_workers", 2]) == 0
    return out


def test_prepare_data(corpus, prepared, capsys):
    rows = read_manifest(prepared)
    raw = dict(line.split(" ", 1) for line in
               (corpus / "text").read_text(encoding="utf-8").splitlines())
    assert [r.key for r in rows] == ["u0", "u1", "u2", "u3", "t1", "t2"]
    for row in rows:
        assert row.text == normalize_text(raw[row.key])
        assert row.labels.get("raw_text", row.text) == raw[row.key]
        assert row.duration == pytest.approx(row.end - row.start)
    skipped = [line.split("\t") for line in
               (prepared.parent / "data.list.skipped.tsv").read_text().splitlines()]
    assert [k for k, _, _ in skipped] == [display_key(k, "hash") for k in ("t3", "g1", "b1", "e1")]
    reasons = [r for _, _, r in skipped]
    assert reasons[0].startswith("segment starts at 60.0 s, after the end of the audio")
    assert reasons[1:3] == ["file not found", reasons[2]] and "unreadable" in reasons[2]
    assert reasons[3] == "empty transcript"
    assert "wav/gone.wav" not in "".join(a for _, a, _ in skipped)  # paths hashed too


def test_prepare_data_whole_files_and_errors(vi_speech, tmp_path, capsys):
    listing = tmp_path / "list.tsv"
    listing.write_text("path\ttranscript\n" + "".join(
        f"{p}\t{t}\n" for p, t in vi_speech[:2]) + "missing.wav\t\n", encoding="utf-8")
    assert _run(prepare_data.main, ["--data", listing, "--output", tmp_path / "o.list"]) == 0
    rows = read_manifest(tmp_path / "o.list")
    assert [r.duration for r in rows] == pytest.approx(
        [load_audio(p).numel() / 16000 for p, _ in vi_speech[:2]])
    assert "kept 2 of 3 utterances" in capsys.readouterr().out
    listing.write_text("path\ttranscript\na.wav\tx\nb.wav\n", encoding="utf-8")
    assert _run(prepare_data.main, ["--data", listing, "--output", tmp_path / "o.list"]) != 0
    assert "list.tsv:3: 1 cells, the header has 2" in capsys.readouterr().err


def _direct_stats(rows):
    feats = np.concatenate([compute_fbank(load_audio(r.audio, start=r.start, end=r.end)).double()
                            for r in rows])
    return feats.sum(0), (feats ** 2).sum(0), len(feats)


def test_compute_cmvn_equals_direct_fbank_stats(corpus, prepared, tmp_path, capsys):
    rows = read_manifest(prepared)
    # a list with one unreadable row: skipped and counted
    listing = tmp_path / "with_bad.list"
    write_manifest(listing, rows + [Utterance("x", str(tmp_path / "gone.wav"))])
    assert _run(compute_cmvn.main, ["--data", listing, "--output", tmp_path / "one"]) == 0
    assert "1 skipped (file not found: 1)" in capsys.readouterr().out
    stats = json.loads((tmp_path / "one").read_text())
    sums, squares, frames = _direct_stats(rows)
    assert stats["frame_num"] == frames
    np.testing.assert_allclose(stats["mean_stat"], sums, rtol=1e-9)
    np.testing.assert_allclose(stats["var_stat"], squares, rtol=1e-9)
    mean, istd = read_cmvn(tmp_path / "one")
    np.testing.assert_allclose(mean, sums / frames, rtol=1e-5)
    assert _run(compute_cmvn.main, ["--data", listing, "--output", tmp_path / "two",
                                    "--num_workers", 2]) == 0
    assert (tmp_path / "two").read_text() == (tmp_path / "one").read_text()


@pytest.mark.parametrize("workers", [1, 2])
def test_compute_fbank_writes_inference_features_in_list_order(prepared, tmp_path, capsys,
                                                               monkeypatch, workers):
    rows = read_manifest(prepared)
    listing = tmp_path / "with_bad.list"
    write_manifest(listing, rows[:2] + [Utterance("x", str(tmp_path / "gone.wav"))] + rows[2:])
    monkeypatch.setattr(fbank_tool, "CHUNK", 2)  # several arks, shared among the workers
    out = tmp_path / "fbank"
    assert _run(fbank_tool.main, ["--data", listing, "--output_dir", out,
                                     "--num_workers", workers, "--key_mode", "hash"]) == 0
    assert f"fbank of {len(rows)} utterances, 1 skipped (unreadable audio: 1)" in \
        capsys.readouterr().out
    table = read_feats_scp(out / "feats.scp")  # keys may be non-ASCII: read by offset
    assert list(table) == [r.key for r in rows]
    assert len(list(out.glob("feats_*.ark"))) == 4 and not list(out.glob("*.scp.tmp"))
    for row in rows:
        expected = compute_fbank(load_audio(row.audio, start=row.start, end=row.end))
        assert torch.equal(torch.from_numpy(np.array(kaldiio.load_mat(table[row.key]))),
                           expected), row.key
    skipped = (out / "skipped.tsv").read_text()
    assert skipped.startswith(display_key("x", "hash") + "\t") and "file not found" in skipped
    only_bad = tmp_path / "bad.list"
    write_manifest(only_bad, [Utterance("x", str(tmp_path / "gone.wav"))])
    assert _run(fbank_tool.main, ["--data", only_bad, "--output_dir", tmp_path / "b"]) == 1
    # a relative --output_dir still gives an scp that works from any folder (recipes in egs/
    # read the top-level recipe's features)
    monkeypatch.chdir(tmp_path)
    assert _run(fbank_tool.main, ["--data", prepared, "--output_dir", "rel"]) == 0
    monkeypatch.chdir(tmp_path / "b")
    table = read_feats_scp(tmp_path / "rel" / "feats.scp")
    assert all(Path(spec.rsplit(":", 1)[0]).is_absolute() for spec in table.values())
    assert kaldiio.load_mat(table[rows[0].key]).shape[1] == 80


def test_compute_cmvn_subset(prepared, tmp_path):
    rows = read_manifest(prepared)
    assert _run(compute_cmvn.main, ["--data", prepared, "--output", tmp_path / "cmvn",
                                    "--max_utts", 3, "--seed", 5]) == 0
    subset = compute_cmvn.subsample(rows, 3, 5)
    assert len(subset) == 3 and subset == sorted(subset, key=rows.index)
    assert json.loads((tmp_path / "cmvn").read_text())["frame_num"] == _direct_stats(subset)[2]


@pytest.mark.parametrize("kind, extra", [("char", []), ("bpe", ["--vocab_size", 40])])
def test_build_vocab(prepared, tmp_path, kind, extra, capsys):
    assert _run(build_vocab.main, ["--data", prepared, "--kind", kind, "--output_dir",
                                   tmp_path, *extra]) == 0
    assert "coverage 100.00% of characters, 0 transcripts with unknown" in capsys.readouterr().out
    assert (tmp_path / "bpe.model").is_file() == (kind == "bpe")
    tokenizer = load_tokenizer(tmp_path)
    assert tokenizer.kind == kind and tokenizer.vocab.tokens[0] == "<blank>"
    for row in read_manifest(prepared):
        ids, unknown = tokenizer.encode(row.text)
        assert not unknown and tokenizer.decode(ids) == row.text
    assert (tmp_path / "oov.tsv").read_text() == ""


def test_build_vocab_released_reports_unknown_characters(ref_model_dir, tmp_path, capsys):
    listing = tmp_path / "data.list"
    write_manifest(listing, [Utterance("a", "/a.wav", "Chào anh 99"),
                             Utterance("b", "/b.wav", "Số dư 1 triệu"),
                             Utterance("c", "/c.wav", "anh ba"), Utterance("d", "/d.wav")])
    out = tmp_path / "lang"
    assert _run(build_vocab.main, ["--data", listing, "--kind", "released", "--model_dir",
                                   ref_model_dir, "--output_dir", out]) == 0
    printed = capsys.readouterr().out
    assert "3 transcripts (1 rows without one)" in printed
    assert "2 transcripts with unknown" in printed
    assert "unknown '9' U+0039 DIGIT NINE: 2" in printed
    oov = {line.split("\t")[0]: int(line.split("\t")[3])
           for line in (out / "oov.tsv").read_text(encoding="utf-8").splitlines()}
    expected = Counter(c for t in ("99", "ố", "1", "ệ") for c in t)
    assert oov == expected
    assert (out / "vocab.txt").read_bytes() == (ref_model_dir / "vocab.txt").read_bytes()


def test_build_vocab_errors(prepared, tmp_path, capsys):
    assert _run(build_vocab.main, ["--data", prepared, "--kind", "bpe", "--output_dir",
                                   tmp_path]) != 0
    assert "needs --vocab_size" in capsys.readouterr().err
    assert _run(build_vocab.main, ["--data", prepared, "--kind", "released", "--model_dir",
                                   tmp_path / "none", "--output_dir", tmp_path]) != 0


def _calls(n=40):
    """Rows of n calls, 2-4 utterances each, agents shared across calls."""
    rows = []
    for c in range(n):
        for u in range(2 + c % 3):
            rows.append(Utterance(f"call{c}-{u}", f"/calls/{c}.wav", "x", u, u + 1.0, 1.0,
                                  speaker=f"agent{c % 7}", group=f"call{c}"))
    return rows


@pytest.mark.parametrize("by", ["group", "speaker"])
def test_split_data_keeps_groups_on_one_side(tmp_path, by):
    listing = tmp_path / "all.list"
    write_manifest(listing, _calls())
    args = ["--data", listing, "--by", by, "--dev_fraction", 0.2, "--train", tmp_path / "tr",
            "--dev", tmp_path / "dev"]
    assert _run(split_data.main, args + ["--seed", 1]) == 0
    train, dev = read_manifest(tmp_path / "tr"), read_manifest(tmp_path / "dev")
    side = {getattr(r, by) for r in train}
    assert side and not side & {getattr(r, by) for r in dev}  # no group on both sides
    assert sorted(r.key for r in train + dev) == sorted(r.key for r in _calls())
    assert 0.1 < len(dev) / (len(train) + len(dev)) < 0.4
    first = (tmp_path / "dev").read_text()
    assert _run(split_data.main, args + ["--seed", 1]) == 0
    assert (tmp_path / "dev").read_text() == first  # seeded
    assert _run(split_data.main, args + ["--seed", 2]) == 0
    assert (tmp_path / "dev").read_text() != first or by == "speaker"


def test_split_data_errors(tmp_path, capsys):
    listing = tmp_path / "all.list"
    write_manifest(listing, [Utterance("a", "/a.wav", group="g"), Utterance("b", "/b.wav")])
    args = ["--data", listing, "--train", tmp_path / "tr", "--dev", tmp_path / "dev"]
    assert _run(split_data.main, args + ["--by", "speaker"]) != 0
    assert "utterance 'a' has no speaker" in capsys.readouterr().err
    write_manifest(listing, [Utterance("a", "/a.wav", group="g"),
                             Utterance("b", "/a.wav", group="g")])
    assert _run(split_data.main, args) != 0
    assert "1 group value(s)" in capsys.readouterr().err
    assert _run(split_data.main, args + ["--dev_fraction", 1.5]) != 0


def test_make_shards(prepared, tmp_path, capsys):
    rows = read_manifest(prepared)
    listing = tmp_path / "with_bad.list"
    write_manifest(listing, rows + [Utterance("x", str(tmp_path / "gone.wav"), "x")])
    out = tmp_path / "shards"
    assert _run(make_shards.main, ["--data", listing, "--output_dir", out, "--shard_size", 4,
                                   "--shuffle", "--seed", 3, "--num_workers", 2]) == 0
    assert "6 utterances in 2 shards, 1 skipped (file not found: 1)" in capsys.readouterr().out
    packed = [u for path in read_shard_list(out / "shards.list") for u, _ in iterate_shard(path)]
    assert sorted(u.key for u in packed) == sorted(r.key for r in rows)
    assert [u.key for u in packed] != [r.key for r in rows]  # shuffled
    by_key = {r.key: r for r in rows}
    for u in packed:
        assert u.text == by_key[u.key].text and u.duration == pytest.approx(by_key[u.key].duration)
    assert (out / "skipped.tsv").read_text().startswith("x\t")
