"""ONNX export: both graphs equal PyTorch within 1e-4 on onnxruntime (several lengths, batch
sizes and contexts, two architectures), the streaming graph fed chunk by chunk equals offline
chunked decoding, `recognize --backend onnx` writes PyTorch's text, the server runs on it, and
the int8 graphs decode."""
import json
import re
import subprocess
import sys

import numpy as np
import pytest
import torch

pytest.importorskip("onnxruntime")
from chunkformer.decoding.endless import decode_long  # noqa: E402
from chunkformer.export.onnx import FULL_INPUTS, STREAM_INPUTS, export_onnx  # noqa: E402
from chunkformer.export.runtime import OnnxModel  # noqa: E402
from chunkformer.model import ChunkFormerModel  # noqa: E402


@pytest.fixture(scope="module")
def model(default_model):
    return ChunkFormerModel.from_pretrained(default_model).eval()


@pytest.fixture(scope="module")
def exported(model, tmp_path_factory):
    folder = tmp_path_factory.mktemp("onnx")
    export_onnx(model, folder, 8, 32, quantize=True)
    return folder


def full_difference(model, session, lens, seed):
    gen = torch.Generator().manual_seed(seed)
    feats = torch.randn(len(lens), max(lens), 80, generator=gen) * 3 + 10
    with torch.no_grad():
        enc, enc_lens = model.encoder(feats, torch.tensor(lens), 0, 0, 0)
        ref = model.ctc.log_probs(enc)
    out, out_lens = session.run(None, dict(zip(FULL_INPUTS, (feats.numpy(), np.array(lens)))))
    assert out_lens.tolist() == enc_lens.tolist()
    return max(float((r[:n] - torch.from_numpy(o[:n])).abs().max())
               for r, o, n in zip(ref, out, enc_lens.tolist()))


def stream_difference(model, session, chunk, left, batch, seed):
    enc = model.encoder
    gen = torch.Generator().manual_seed(seed)
    lengths = torch.randint(1, chunk + 1, (batch,), generator=gen)
    inputs = (torch.randn(batch, 8 * chunk + 7, 80, generator=gen) * 3 + 10, lengths,
              torch.randint(0, 3 * left + 1, (batch,), generator=gen),
              torch.randn(enc.num_blocks, batch, 2, left, enc.output_size, generator=gen),
              torch.randn(enc.num_blocks, batch, enc.lorder, enc.output_size, generator=gen))
    with torch.no_grad():
        x, att, conv = enc.forward_chunks(*inputs, chunk, left)
        ref = model.ctc.log_probs(x)
    out, out_att, out_conv = session.run(None, dict(zip(STREAM_INPUTS,
                                                        (t.numpy() for t in inputs))))
    worst = max(float((r[:n] - torch.from_numpy(o[:n])).abs().max())
                for r, o, n in zip(ref, out, lengths.tolist()))
    for a, b in ((att, out_att), (conv, out_conv)):
        if a.numel():
            worst = max(worst, float((a - torch.from_numpy(b)).abs().max()))
    return worst


def test_both_graphs_equal_pytorch(model, exported):
    onnx = OnnxModel(exported)
    for seed, lens in enumerate(([407], [1000, 555, 90], [123, 700], [15, 16, 23])):
        assert full_difference(model, onnx.sessions["full"], lens, seed) <= 1e-4, lens
    for seed, batch in enumerate((1, 2, 7)):
        assert stream_difference(model, onnx.sessions["stream"], 8, 32, batch, seed) <= 1e-4


@pytest.mark.parametrize("context", [(4, 16), (16, 0)])
def test_other_contexts_and_the_reference_architecture(ref_model, model, tmp_path, context):
    for m, name in ((ref_model, "reference"), (model, "default")):
        export_onnx(m, tmp_path / name, *context)
        onnx = OnnxModel(tmp_path / name)
        assert (onnx.chunk_size, onnx.left_context_size) == context
        assert stream_difference(m, onnx.sessions["stream"], *context, 3, 5) <= 1e-4, name
        assert full_difference(m, onnx.sessions["full"], [300, 211], 9) <= 1e-4, name


def test_metadata(model, exported):
    onnx = OnnxModel(exported)
    meta = onnx.meta
    assert (meta["graph"], meta["chunk_size"], meta["left_context_size"],
            meta["right_context_size"], meta["subsampling"]) == ("stream", "8", "32", "0", "8")
    assert json.loads(meta["vocabulary"]) == model.vocab.tokens
    assert int(meta["num_blocks"]) == model.encoder.num_blocks
    full = onnx.sessions["full"].get_modelmeta().custom_metadata_map
    assert full["graph"] == "full" and full["vocabulary"] == meta["vocabulary"]


def test_streaming_graph_equals_chunked_decoding(model, exported, real_recording, vi_speech):
    onnx = OnnxModel(exported)
    files = [str(real_recording)] + [str(p) for p, _ in vi_speech[:3]]
    got = onnx.decode([model.features(f) for f in files], 8, 32, 0)
    for f, g in zip(files, got):
        assert g.frame_ids == decode_long(model, f, 8, 32, 0).frame_ids
    full = onnx.decode([model.features(f) for f in files], 0)
    torch_full = model.batch_decode(files, 0, 0, 0)
    assert [t.text for t in full] == torch_full
    with pytest.raises(ValueError, match="chunk 8, left 32, right 0"):
        onnx.decode([model.features(files[0])], 8, 32, 2)


def recognize(args, out):
    cmd = [sys.executable, "-m", "chunkformer.bin.recognize", "--output_dir", str(out), *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300)


def test_recognize_backend_onnx_writes_the_text_of_pytorch(default_model, exported, vi_speech,
                                                           real_recording, tmp_path):
    data = tmp_path / "wav.scp"
    data.write_text("".join(f"u{i} {p}\n" for i, (p, _) in enumerate(vi_speech)) +
                    f"real {real_recording}\n")
    for context in (["--chunk_size", "0"],
                    ["--chunk_size", "8", "--left_context_size", "32",
                     "--right_context_size", "0"],
                    ["--chunk_size", "8", "--left_context_size", "32",
                     "--right_context_size", "0", "--long_form_threshold", "1"]):
        texts = {}
        for backend, folder in (("torch", default_model), ("onnx", exported)):
            out = tmp_path / backend
            r = recognize(["--model_dir", str(folder), "--data", str(data), "--backend", backend,
                           *context], out)
            assert r.returncode == 0, r.stderr
            texts[backend] = (out / "text").read_text(encoding="utf-8")
        assert texts["onnx"] == texts["torch"], context
    r = recognize(["--model_dir", str(exported), "--data", str(data), "--backend", "onnx_int8",
                   "--chunk_size", "0"], tmp_path / "int8")
    assert r.returncode == 0 and (tmp_path / "int8" / "text").read_text().count("\n") == \
        len(vi_speech) + 1
    bad = recognize(["--model_dir", str(exported), "--data", str(data), "--backend", "onnx"],
                    tmp_path / "bad")  # the default 64/128/128 is not what was exported
    assert bad.returncode == 1 and "chunk 8, left 32, right 0" in bad.stderr
    bad = recognize(["--model_dir", str(exported), "--data", str(data), "--backend", "onnx",
                     "--chunk_size", "0", "--mode", "attention_rescoring"], tmp_path / "bad")
    assert bad.returncode == 1 and "ctc_greedy only" in bad.stderr
    bad = recognize(["--model_dir", str(exported), "--data", str(data), "--backend", "onnx",
                     "--chunk_size", "0", "--max_symbols", "4"], tmp_path / "bad")
    assert bad.returncode == 1 and "symbol cap, this model has none" in bad.stderr
    bad = recognize(["--model_dir", str(tmp_path), "--data", str(data), "--backend", "onnx"],
                    tmp_path / "bad")
    assert bad.returncode == 1 and "full.onnx: no such file" in bad.stderr


def test_server_runs_on_onnx(exported, default_model, vi_speech):
    pytest.importorskip("websockets")
    from websockets.sync.client import connect

    import soundfile as sf

    proc = subprocess.Popen([sys.executable, "-m", "chunkformer.bin.serve", "--onnx_dir",
                             str(exported), "--port", "0", "--host", "127.0.0.1"],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        url = "ws://127.0.0.1:" + re.search(r":(\d+) ", proc.stdout.readline()).group(1)
        x, rate = sf.read(str(vi_speech[2][0]), dtype="int16")
        with connect(url) as ws:
            ws.send(json.dumps({"signal": "start", "sample_rate": rate,
                                "continuous_decoding": True}))
            assert json.loads(ws.recv())["type"] == "server_ready"
            for i in range(0, len(x), 1600):
                ws.send(x[i:i + 1600].tobytes())
            ws.send(json.dumps({"signal": "end"}))
            messages = [json.loads(m) for m in ws]
    finally:
        proc.terminate()
        proc.wait(10)
    text = " ".join(json.loads(m["nbest"])[0]["sentence"] for m in messages
                    if m["type"] == "final_result")
    model = ChunkFormerModel.from_pretrained(default_model)
    assert text.strip() == decode_long(model, str(vi_speech[2][0]), 8, 32, 0).text
    assert messages[-1]["type"] == "speech_end"
    bad = subprocess.run([sys.executable, "-m", "chunkformer.bin.serve", "--onnx_dir",
                          str(exported), "--chunk_size", "16", "--port", "0"],
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode == 1 and "chunk 8, left 32" in bad.stderr
