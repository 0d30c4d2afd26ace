"""Transducer folders: strict loading with one clear message, both weight file names, both
``<sos/eos>`` placements, k2's training-only keys, configs the reference accepts but cannot
run refused, and a bit-exact save/load round trip."""
import shutil

import pytest
import torch
import yaml

from chunkformer.config import ConfigError
from chunkformer.model import ChunkFormerModel
from chunkformer.pretrained import CheckpointMismatch
from chunkformer.transducer.model import TransducerModel


@pytest.fixture
def folder(tmp_path, rnnt_dir):
    out = tmp_path / "rnnt"
    shutil.copytree(rnnt_dir / "model", out)
    for f in out.iterdir():
        f.chmod(0o644)
    return out


def edit_config(folder, change):
    cfg = yaml.safe_load((folder / "config.yaml").read_text(encoding="utf-8"))
    change(cfg)
    (folder / "config.yaml").write_text(yaml.safe_dump(cfg, allow_unicode=True),
                                        encoding="utf-8")


def edit_state(folder, change, name="pytorch_model.bin"):
    state = torch.load(folder / "pytorch_model.bin", weights_only=True)
    change(state)
    (folder / "pytorch_model.bin").unlink()
    torch.save(state, folder / name)


def test_loads_strictly_with_every_key(rnnt_model):
    assert isinstance(rnnt_model, TransducerModel)
    keys = rnnt_model.state_dict().keys()
    assert len(keys) == 215
    groups = {g: sum(k.startswith(g + ".") for k in keys)
              for g in ("encoder", "decoder", "ctc", "predictor", "joint")}
    assert groups == {"encoder": 164, "decoder": 32, "ctc": 2, "predictor": 11, "joint": 6}
    assert rnnt_model.sos == rnnt_model.eos == 255 and rnnt_model.blank == 0


def test_save_load_round_trip_is_bit_exact(rnnt_model, tmp_path):
    rnnt_model.save_pretrained(tmp_path / "copy")
    again = ChunkFormerModel.from_pretrained(tmp_path / "copy")
    assert isinstance(again, TransducerModel)
    a, b = rnnt_model.state_dict(), again.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert again.config["predictor_conf"] == rnnt_model.config["predictor_conf"]


def test_pt_weights_and_sos_eos_at_2(folder):
    """Upstream's transducer recipe: ``pytorch_model.pt`` and units <blank> 0, <unk> 1,
    <sos/eos> 2 (spec/rnnt.md §1)."""
    edit_state(folder, lambda s: None, name="pytorch_model.pt")
    lines = (folder / "vocab.txt").read_text(encoding="utf-8").splitlines()
    tokens = [line.split()[0] for line in lines]
    tokens = tokens[:2] + ["<sos/eos>"] + tokens[2:-1]
    (folder / "vocab.txt").write_text("".join(f"{tok} {i}\n" for i, tok in enumerate(tokens)),
                                      encoding="utf-8")
    edit_config(folder, lambda c: c["tokenizer_conf"]["special_tokens"].update(
        {"<sos>": 2, "<eos>": 2}))
    model = ChunkFormerModel.from_pretrained(folder)
    assert model.sos == model.eos == 2 and model.vocab.tokens[2] == "<sos/eos>"


def test_a_missing_or_extra_key_is_one_message(folder):
    edit_state(folder, lambda s: (s.pop("predictor.rnn.weight_hh_l1"),
                                  s.__setitem__("joint.extra.weight", torch.zeros(1))))
    with pytest.raises(CheckpointMismatch) as e:
        ChunkFormerModel.from_pretrained(folder)
    message = str(e.value)
    assert "missing (1): predictor.rnn.weight_hh_l1" in message
    assert "unexpected (1): joint.extra.weight" in message and "\n" not in message


def test_a_wrong_shape_is_named(folder):
    edit_config(folder, lambda c: c["predictor_conf"].update(hidden_size=100))
    with pytest.raises(CheckpointMismatch, match="predictor.rnn.weight_hh_l0"):
        ChunkFormerModel.from_pretrained(folder)


def test_k2_training_keys_are_dropped_and_listed(folder):
    edit_state(folder, lambda s: s.update({"simple_am_proj.weight": torch.zeros(256, 96),
                                           "simple_lm_proj.weight": torch.zeros(256, 80)}))
    model = ChunkFormerModel.from_pretrained(folder)
    assert "simple_am_proj.weight" in str(model.load_report)


@pytest.mark.parametrize("change, message", [
    (lambda c: c.update(predictor="embedding"), "predictor: 'embedding' is not supported"),
    (lambda c: c["predictor_conf"].update(rnn_type="gru"), "rnn_type: 'gru'"),
    (lambda c: c["joint_conf"].update(hat_joint=True), "HAT joint"),
    (lambda c: c["joint_conf"].update(joint_mode="concat"), "joint_mode"),
    (lambda c: c["joint_conf"].update(enc_output_size=64), "enc_output_size 64"),
    (lambda c: c["predictor_conf"].pop("hidden_size"), "predictor_conf.hidden_size is required"),
    (lambda c: c["predictor_conf"].update(hiden_size=3), "did you mean predictor_conf.hidden"),
    (lambda c: c["model_conf"].update(ctc_weight=0.2), "must be 1"),
    (lambda c: c["joint_conf"].update(activation="mish"), "activation: 'mish'"),
])
def test_configs_that_cannot_run_are_refused(folder, change, message):
    edit_config(folder, change)
    with pytest.raises(ConfigError, match=message):
        ChunkFormerModel.from_pretrained(folder)


def test_ctc_modes_still_work_and_rnnt_modes_need_a_transducer(rnnt_model, ref_model,
                                                               reference):
    feats = [torch.from_numpy(reference["fbank_1"])]
    from chunkformer.decoding.batch import decode_features
    assert decode_features(rnnt_model, feats, None, 0, 0, mode="ctc_greedy")[0].ids
    with pytest.raises(ValueError, match="not one this model has"):
        decode_features(ref_model, feats, None, 0, 0, mode="rnnt_greedy")
