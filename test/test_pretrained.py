"""Released-folder loading: strict keys, explicit rules, legacy schema, bit-exact round trip."""
import json
import shutil

import pytest
import torch
import yaml

from chunkformer.config import ConfigError
from chunkformer.model import ChunkFormerModel
from chunkformer.pretrained import CheckpointMismatch

LARGE_CONFIG = {
    "model": "asr_model", "encoder": "chunkformer", "input_dim": 80, "output_dim": 6992,
    "is_json_cmvn": True,
    "encoder_conf": {"output_size": 512, "attention_heads": 8, "linear_units": 2048,
                     "num_blocks": 17, "cnn_module_kernel": 15, "input_layer": "dw_striding",
                     "pos_enc_layer_type": "chunk_rel_pos",
                     "selfattention_layer_type": "chunk_rel_seflattn",
                     "cnn_module_norm": "layer_norm", "activation_type": "swish",
                     "normalize_before": True, "use_cnn_module": True, "dynamic_conv": True},
    "ctc_conf": {"ctc_blank_id": 0},
    "fbank_conf": {"num_mel_bins": 80, "frame_length": 25, "frame_shift": 10},
}


def spec_state_dict(d=512, heads=8, ffn=2048, blocks=17, vocab=6992, dec_blocks=6):
    """The key names and shapes of spec/model.md §6, written out independently of our code."""
    shapes = {"encoder.global_cmvn.mean": (80,), "encoder.global_cmvn.istd": (80,)}
    for i in (0, 2, 5):
        shapes[f"encoder.embed.conv.{i}.weight"] = (d, 1, 3, 3)
        shapes[f"encoder.embed.conv.{i}.bias"] = (d,)
    for i in (3, 6):
        shapes[f"encoder.embed.conv.{i}.weight"] = (d, d, 1, 1)
        shapes[f"encoder.embed.conv.{i}.bias"] = (d,)
    shapes["encoder.embed.out.weight"] = (d, d * 9)
    shapes["encoder.embed.out.bias"] = (d,)
    for i in range(blocks):
        p = f"encoder.encoders.{i}."
        for ff in ("feed_forward_macaron", "feed_forward"):
            shapes.update({p + ff + ".w_1.weight": (ffn, d), p + ff + ".w_1.bias": (ffn,),
                           p + ff + ".w_2.weight": (d, ffn), p + ff + ".w_2.bias": (d,)})
        for lin in ("linear_q", "linear_k", "linear_v", "linear_out"):
            shapes[p + f"self_attn.{lin}.weight"] = (d, d)
            shapes[p + f"self_attn.{lin}.bias"] = (d,)
        shapes[p + "self_attn.linear_pos.weight"] = (d, d)
        shapes[p + "self_attn.pos_bias_u"] = (heads, d // heads)
        shapes[p + "self_attn.pos_bias_v"] = (heads, d // heads)
        c = p + "conv_module."
        shapes.update({c + "pointwise_conv1.weight": (2 * d, d, 1), c + "pointwise_conv1.bias":
                       (2 * d,), c + "depthwise_conv.weight": (d, 1, 15),
                       c + "depthwise_conv.bias": (d,), c + "norm.weight": (d,),
                       c + "norm.bias": (d,), c + "pointwise_conv2.weight": (d, d, 1),
                       c + "pointwise_conv2.bias": (d,)})
        for n in ("norm_ff_macaron", "norm_mha", "norm_conv", "norm_ff", "norm_final"):
            shapes[p + n + ".weight"] = (d,)
            shapes[p + n + ".bias"] = (d,)
    shapes.update({"encoder.after_norm.weight": (d,), "encoder.after_norm.bias": (d,),
                   "ctc.ctc_lo.weight": (vocab, d), "ctc.ctc_lo.bias": (vocab,)})
    if dec_blocks:
        shapes.update({"decoder.embed.0.weight": (vocab, d), "decoder.embed.1.pe": (1, 5000, d),
                       "decoder.after_norm.weight": (d,), "decoder.after_norm.bias": (d,),
                       "decoder.output_layer.weight": (vocab, d),
                       "decoder.output_layer.bias": (vocab,)})
        for j in range(dec_blocks):
            p = f"decoder.decoders.{j}."
            for att in ("self_attn", "src_attn"):
                for lin in ("linear_q", "linear_k", "linear_v", "linear_out"):
                    shapes[p + f"{att}.{lin}.weight"] = (d, d)
                    shapes[p + f"{att}.{lin}.bias"] = (d,)
            shapes.update({p + "feed_forward.w_1.weight": (2048, d),
                           p + "feed_forward.w_1.bias": (2048,),
                           p + "feed_forward.w_2.weight": (d, 2048),
                           p + "feed_forward.w_2.bias": (d,)})
            for n in ("norm1", "norm2", "norm3"):
                shapes[p + n + ".weight"] = (d,)
                shapes[p + n + ".bias"] = (d,)
    gen = torch.Generator().manual_seed(0)
    state = {k: torch.randn(s, generator=gen) * 0.02 for k, s in shapes.items()}
    state["encoder.global_cmvn.istd"] = state["encoder.global_cmvn.istd"].abs() + 0.1
    return state


def write_folder(folder, config, state, vocab_size, cmvn=True):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.yaml").write_text(yaml.safe_dump(config))
    torch.save(state, folder / "pytorch_model.bin")
    pieces = ["<blank>", "<unk>"] + [f"▁t{i}" for i in range(vocab_size - 3)] + ["<sos/eos>"]
    (folder / "vocab.txt").write_text("".join(f"{p} {i}\n" for i, p in enumerate(pieces)))
    if cmvn:
        (folder / "global_cmvn").write_text(json.dumps(
            {"mean_stat": [100.0] * 80, "var_stat": [20000.0] * 80, "frame_num": 10}))
    return folder


def test_released_large_layout_loads_strictly(tmp_path):
    state = spec_state_dict()
    assert sum(k.startswith("encoder.") and "global_cmvn" not in k for k in state) == 643
    assert sum(k.startswith("decoder.") for k in state) == 162
    folder = write_folder(tmp_path / "large", {**LARGE_CONFIG, "decoder": "transformer"},
                          state, 6992)
    model = ChunkFormerModel.from_pretrained(folder)
    n_enc_ctc = sum(p.numel() for n, p in model.named_parameters()
                    if not n.startswith("decoder."))
    assert n_enc_ctc == 113_852_240  # the released vie model's parameter count
    ours = model.state_dict()
    assert set(ours) == set(state)
    assert all(torch.equal(ours[k], state[k]) for k in state)
    with torch.no_grad():
        enc, lens = model.encode(torch.randn(1, 300, 80), torch.tensor([300]), 64, 128, 128)
    assert enc.shape == (1, 36, 512) and torch.isfinite(enc).all()


@pytest.fixture
def small_folder(tmp_path, ref_model_dir):
    return shutil.copytree(ref_model_dir, tmp_path / "small")


def _edit_state(folder, fn):
    state = torch.load(folder / "pytorch_model.bin", weights_only=True)
    fn(state)
    torch.save(state, folder / "pytorch_model.bin")


def test_mismatches_are_listed_in_one_message(small_folder):
    def edit(s):
        del s["encoder.encoders.1.norm_mha.weight"]
        s["encoder.encoders.9.extra"] = torch.zeros(1)
        s["ctc.ctc_lo.bias"] = torch.zeros(7)
        del s["decoder.decoders.0.norm1.bias"]
    _edit_state(small_folder, edit)
    with pytest.raises(CheckpointMismatch) as e:
        ChunkFormerModel.from_pretrained(small_folder)
    msg = str(e.value)
    assert "\n" not in msg
    for part in ("missing (2)", "encoder.encoders.1.norm_mha.weight",
                 "decoder.decoders.0.norm1.bias", "unexpected (1)", "encoder.encoders.9.extra",
                 "shape mismatch (1)", "ctc.ctc_lo.bias (7,)"):
        assert part in msg


def test_ignore_list_is_explicit_and_reported(small_folder):
    _edit_state(small_folder, lambda s: s.update({"extras.foo": torch.ones(2)}))
    with pytest.raises(CheckpointMismatch):
        ChunkFormerModel.from_pretrained(small_folder)
    model = ChunkFormerModel.from_pretrained(small_folder, ignore=["extras."])
    assert model.load_report.ignored_keys == ["extras.foo"]
    assert "extras.foo" in str(model.load_report)


def test_folder_without_decoder_is_ctc_only(small_folder):
    _edit_state(small_folder, lambda s: [s.pop(k) for k in list(s) if k.startswith("decoder.")])
    model = ChunkFormerModel.from_pretrained(small_folder)
    assert model.decoder is None
    assert "CTC-only" in str(model.load_report)


def test_bitransformer_decoder_loads_strictly(small_folder):
    cfg = yaml.safe_load((small_folder / "config.yaml").read_text())
    cfg["decoder"] = "bitransformer"
    cfg["decoder_conf"]["r_num_blocks"] = 1
    (small_folder / "config.yaml").write_text(yaml.safe_dump(cfg))
    with pytest.raises(CheckpointMismatch, match="decoder.left_decoder"):
        ChunkFormerModel.from_pretrained(small_folder)

    def to_bi(s):
        for k in [k for k in s if k.startswith("decoder.")]:
            v = s.pop(k)
            s["decoder.left_decoder." + k[8:]] = v
            s["decoder.right_decoder." + k[8:]] = v.clone()
    _edit_state(small_folder, to_bi)
    model = ChunkFormerModel.from_pretrained(small_folder)
    assert sum(k.startswith("decoder.right_decoder.") for k in model.state_dict()) > 0


def test_legacy_schema_is_mapped(small_folder):
    cfg = yaml.safe_load((small_folder / "config.yaml").read_text())
    enc = cfg["encoder_conf"]
    enc.update(input_layer="depthwise", pos_enc_layer_type="stream_rel_pos",
               selfattention_layer_type="stream_rel_selfattn",
               use_dynamic_conv=enc.pop("dynamic_conv"))
    (small_folder / "config.yaml").write_text(yaml.safe_dump(cfg))
    model = ChunkFormerModel.from_pretrained(small_folder)
    report = str(model.load_report)
    assert "depthwise → dw_striding" in report and "use_dynamic_conv → dynamic_conv" in report


def test_unsupported_values_name_the_key(small_folder):
    cfg = yaml.safe_load((small_folder / "config.yaml").read_text())
    cfg["encoder_conf"]["cnn_module_norm"] = "batch_norm"
    cfg["encoder_conf"]["causal"] = True
    (small_folder / "config.yaml").write_text(yaml.safe_dump(cfg))
    with pytest.raises((ConfigError, ValueError), match="causal|cnn_module_norm"):
        ChunkFormerModel.from_pretrained(small_folder)


def test_cmvn_rules(small_folder, ref_model):
    ref_mean = ref_model.encoder.global_cmvn.mean
    # keys absent → the global_cmvn file is used
    _edit_state(small_folder, lambda s: [s.pop(k) for k in list(s) if "global_cmvn" in k])
    model = ChunkFormerModel.from_pretrained(small_folder)
    assert torch.allclose(model.encoder.global_cmvn.mean, ref_mean)
    # file absent but keys present → the checkpoint's statistics, reported
    (small_folder / "global_cmvn").unlink()
    _edit_state(small_folder, lambda s: s.update({
        "encoder.global_cmvn.mean": ref_mean.clone(),
        "encoder.global_cmvn.istd": ref_model.encoder.global_cmvn.istd.clone()}))
    model = ChunkFormerModel.from_pretrained(small_folder)
    assert torch.equal(model.encoder.global_cmvn.mean, ref_mean)
    assert "taken from the checkpoint" in str(model.load_report)


def test_save_load_round_trip_is_bit_exact(tmp_path, ref_model, ref_model_dir):
    ref_model.save_pretrained(tmp_path / "saved")
    again = ChunkFormerModel.from_pretrained(tmp_path / "saved")
    a, b = ref_model.state_dict(), again.state_dict()
    assert set(a) == set(b) and all(torch.equal(a[k], b[k]) for k in a)
    for name in ("vocab.txt", "global_cmvn"):
        assert (tmp_path / "saved" / name).read_bytes() == (ref_model_dir / name).read_bytes()
    x = torch.randn(2, 500, 80)
    lens = torch.tensor([500, 321])
    with torch.no_grad():
        for ctx in ((0, 0, 0), (16, 32, 8)):
            ea, _ = ref_model.encode(x, lens, *ctx)
            eb, _ = again.encode(x, lens, *ctx)
            assert torch.equal(ref_model.ctc_log_probs(ea), again.ctc_log_probs(eb))
    # a second save of the loaded model writes identical files
    again.save_pretrained(tmp_path / "saved2")
    for name in ("config.yaml", "vocab.txt", "global_cmvn"):
        assert (tmp_path / "saved" / name).read_bytes() == (tmp_path / "saved2" / name).read_bytes()


def test_missing_config_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="no config.yaml"):
        ChunkFormerModel.from_pretrained(tmp_path)
