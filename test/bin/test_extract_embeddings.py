"""extract_embeddings: the exported frames are the encoder's (full context and chunked, long
audio through segments), the pooled vector their mean, npy and ark round trips, reruns skip
what exists, bad audio is listed and the rest goes on."""
import json
import subprocess
import sys

import kaldiio
import numpy as np
import soundfile as sf
import torch

from chunkformer.model import ChunkFormerModel


def _run(*args):
    r = subprocess.run([sys.executable, "-m", "chunkformer.bin.extract_embeddings",
                        *map(str, args)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-3000:]
    return r.stdout


def _index(out):
    lines = (out / "index.tsv").read_text().splitlines()
    assert lines[0] == "key\tframes\tpooled\tseconds\tshape"
    return {f[0]: f[1:] for f in (line.split("\t") for line in lines[1:])}


def test_export_round_trip_and_rerun(ref_model_dir, vi_speech, tmp_path):
    model = ChunkFormerModel.from_pretrained(ref_model_dir)
    long_wav = tmp_path / "call 1.wav"  # ~40 s: several segments at a small batch duration
    waves = [sf.read(p, dtype="float32")[0] for p, _ in vi_speech]
    sf.write(long_wav, np.concatenate(waves * 4), 16000)
    rows = [{"key": f"u{i}", "wav": str(p)} for i, (p, _) in enumerate(vi_speech[:2])]
    rows.append({"key": "calls/1", "wav": str(long_wav)})
    (tmp_path / "a.list").write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "emb"
    _run("--model_dir", ref_model_dir, "--data", tmp_path / "a.list", "--output_dir", out,
         "--chunk_size", "16", "--left_context_size", "32", "--right_context_size", "8",
         "--total_batch_duration", "10")
    index = _index(out)
    assert list(index) == ["u0", "u1", "calls/1"]
    for key, wav in (("u0", vi_speech[0][0]), ("calls/1", long_wav)):
        frames = np.load(out / index[key][0])
        feats = model.features(str(wav))
        with torch.no_grad():  # one chunked pass over the whole utterance
            enc, _ = model.encode(feats[None], torch.tensor([feats.size(0)]), 16, 32, 8)
        assert frames.shape == tuple(enc[0].shape)
        assert index[key][3] == f"{frames.shape[0]}x{frames.shape[1]}"
        np.testing.assert_allclose(frames, enc[0].numpy(), atol=2e-4)
        np.testing.assert_allclose(np.load(out / index[key][1]), frames.mean(0), atol=1e-6)
    assert (out / "frames" / "calls%2F1.npy").is_file()
    # a rerun with one more row exports only that one; bad audio is listed, not fatal
    (tmp_path / "bad.wav").write_bytes(b"RIFF0000WAVEjunk")
    rows += [{"key": "u2", "wav": str(vi_speech[2][0])},
             {"key": "bad", "wav": str(tmp_path / "bad.wav")}]
    (tmp_path / "b.list").write_text("".join(json.dumps(r) + "\n" for r in rows))
    before = (out / index["u0"][0]).stat().st_mtime_ns
    stdout = _run("--model_dir", ref_model_dir, "--data", tmp_path / "b.list", "--output_dir",
                  out, "--chunk_size", "0")
    assert "exported 1, skipped 1, already there 3" in stdout
    assert (out / index["u0"][0]).stat().st_mtime_ns == before
    assert list(_index(out)) == ["u0", "u1", "calls/1", "u2"]
    assert (out / "skipped.tsv").read_text().startswith("bad\t")
    # full context: the encoder on the whole utterance
    frames = np.load(out / _index(out)["u2"][0])
    feats = model.features(str(vi_speech[2][0]))
    with torch.no_grad():
        enc, _ = model.encode(feats[None], torch.tensor([feats.size(0)]), 0, 0, 0)
    np.testing.assert_allclose(frames, enc[0].numpy(), atol=1e-4)


def test_ark_format_and_block_layer(ref_model_dir, vi_speech, tmp_path):
    model = ChunkFormerModel.from_pretrained(ref_model_dir)
    rows = [{"key": f"u{i}", "wav": str(p)} for i, (p, _) in enumerate(vi_speech[:2])]
    (tmp_path / "a.list").write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "ark"
    _run("--model_dir", ref_model_dir, "--data", tmp_path / "a.list", "--output_dir", out,
         "--format", "ark", "--layer", "0", "--chunk_size", "0")
    frames = kaldiio.load_scp(str(out / "frames.scp"))
    pooled = kaldiio.load_scp(str(out / "pooled.scp"))
    feats = model.features(str(vi_speech[1][0]))
    with torch.no_grad():
        _, _, blocks = model.encoder(feats[None], torch.tensor([feats.size(0)]), 0, 0, 0,
                                     return_layers=True)
    np.testing.assert_allclose(frames["u1"], blocks[0][0].numpy(), atol=1e-4)
    np.testing.assert_allclose(pooled["u1"], frames["u1"].mean(0), atol=1e-6)
    r = subprocess.run([sys.executable, "-m", "chunkformer.bin.extract_embeddings",
                        "--model_dir", str(ref_model_dir), "--data", str(tmp_path / "a.list"),
                        "--output_dir", str(tmp_path / "x"), "--layer", "weighted"],
                       capture_output=True, text=True)
    assert r.returncode != 0 and "layer weights" in r.stderr
