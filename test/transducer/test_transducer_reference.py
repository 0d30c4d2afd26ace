"""The transducer against the reference vector: predictor, joint, greedy search (alone,
batched, capped, long-form with the state carried), texts, segments and losses."""
from pathlib import Path

import numpy as np
import pytest
import torch

from chunkformer.decoding.batch import decode_features
from chunkformer.decoding.endless import decode_long
from chunkformer.model import ChunkFormerModel
from chunkformer.transducer.loss import rnnt_loss
from chunkformer.transducer.search import greedy_search

pytestmark = pytest.mark.usefixtures("one_thread")


def t(x):
    return torch.from_numpy(np.asarray(x))


def close(ours, theirs, tol=1e-4):
    ours = ours.detach().float()
    assert tuple(ours.shape) == tuple(np.shape(theirs))
    assert (ours - t(theirs).float()).abs().max().item() <= tol


@torch.no_grad()
def test_predictor_matches(rnnt_model, rnnt_ref):
    p = rnnt_model.predictor
    ys, lens = t(rnnt_ref["pred_in"]).long(), t(rnnt_ref["pred_in_lens"]).long()
    close(p(ys, lens), rnnt_ref["pred_out"], 1e-5)
    for k in range(ys.size(0)):
        state = p.initial_state(1)
        outs = []
        for token in [0] + ys[k, :lens[k]].tolist():
            out, state = p.step(torch.tensor([token]), state)
            outs.append(out[0])
        close(torch.stack(outs), rnnt_ref[f"pred_step_out_{k}"], 1e-5)
        close(state[0][:, 0], rnnt_ref[f"pred_state_m_{k}"], 1e-5)
        close(state[1][:, 0], rnnt_ref[f"pred_state_c_{k}"], 1e-5)


@torch.no_grad()
def test_joint_matches(rnnt_model, rnnt_ref):
    j = rnnt_model.joint
    enc, pred = t(rnnt_ref["joint_enc"]), t(rnnt_ref["joint_pred"])
    close(j.project_encoder(enc), rnnt_ref["joint_enc_proj"], 1e-5)
    close(j.project_predictor(pred), rnnt_ref["joint_pred_proj"], 1e-5)
    logits = j(enc[None], pred[None])[0]
    close(logits, rnnt_ref["joint_out"], 1e-5)
    close(logits.log_softmax(-1), rnnt_ref["joint_logp"], 1e-5)


def search(model, encs, max_symbols=64):
    lens = torch.tensor([e.shape[0] for e in encs])
    padded = torch.nn.utils.rnn.pad_sequence([t(e) for e in encs], batch_first=True)
    out, _ = greedy_search(model.predictor, model.joint, padded, lens, max_symbols)
    return [([i for i, _ in o], [f for _, f in o]) for o in out]


@pytest.mark.parametrize("name, cap", [("full", 64), ("mb", 64), ("2_mb", 2)])
def test_greedy_search_on_reference_frames(rnnt_model, rnnt_ref, name, cap):
    source = "full_enc" if name == "full" else "mb_enc"
    encs = [rnnt_ref[f"{source}_{i}"] for i in range(3)]
    alone = [search(rnnt_model, [e], cap)[0] for e in encs]
    batched = search(rnnt_model, encs, cap)
    assert alone == batched  # batch-invariant
    prefix = "greedy_full" if name == "full" else "greedy" + ("2" if cap == 2 else "") + "_mb"
    for i, (ids, frames) in enumerate(batched):
        assert ids == rnnt_ref[f"{prefix}_ids_{i}"].tolist()
        assert frames == rnnt_ref[f"{prefix}_frames_{i}"].tolist()
    if cap == 2:  # frames at the cap move on without a blank
        assert any(f.count(x) == 2 for _, f in batched for x in set(f))


def test_texts_end_to_end(rnnt_model, rnnt_ref, rnnt_meta, reference, rnnt_wav):
    """Our fbank (the reference's 16 kHz samples for the 22.05 kHz file, whose resampling
    differs on purpose), our encoder, our search: the reference's ``batch_decode`` (masked
    batch 64/128/128) and full-context texts."""
    waves = [rnnt_wav(rnnt_meta["wavs"][0]), rnnt_wav(rnnt_meta["wavs"][1]),
             torch.from_numpy(reference["wave16k_2"].astype(np.int16))]
    feats = [rnnt_model.features(w, 16000 if torch.is_tensor(w) else None) for w in waves]
    for i, f in enumerate(feats):
        close(f, rnnt_ref[f"fbank_{i}"], 5e-3)
    masked = decode_features(rnnt_model, feats, 64, 128, 128, mode="rnnt_greedy")
    assert [r.text for r in masked] == rnnt_meta["batch_decode_text"]
    for i, r in enumerate(masked):
        assert r.ids == rnnt_ref[f"greedy_mb_ids_{i}"].tolist()
        assert [tok.first for tok in r.tokens] == rnnt_ref[f"greedy_mb_frames_{i}"].tolist()
    full = decode_features(rnnt_model, feats, None, 0, 0, mode="rnnt_greedy")
    assert [r.text for r in full] == rnnt_meta["greedy_full_text"]
    texts = rnnt_model.batch_decode([str(waves[0]), str(waves[1])], 64, 128, 128,
                                    mode="rnnt_greedy")
    assert texts == rnnt_meta["batch_decode_text"][:2]


def test_long_form_carries_the_predictor_state(rnnt_model, rnnt_ref, rnnt_meta, rnnt_wav):
    long_wav = str(rnnt_wav(rnnt_meta["long_wav"]))
    result = decode_long(rnnt_model, long_wav, 64, 128, 128, total_batch_duration=11,
                         mode="rnnt_greedy")
    assert result.ids == rnnt_ref["endless_ids"].tolist()
    assert [tok.first for tok in result.tokens] == rnnt_ref["endless_frames"].tolist()
    ours = result.segments(0.5)
    assert [{k: s[k] for k in ("decode", "start", "end")} for s in ours] == \
        rnnt_meta["endless_segments"]
    segments = rnnt_model.endless_decode(long_wav, 64, 128, 128, total_batch_duration=11,
                                         mode="rnnt_greedy")
    assert [s["decode"] for s in segments] == [s["decode"] for s in rnnt_meta["endless_segments"]]
    # the reference's text joins the segments with spaces, also where the next segment
    # continues a word (its first piece has no ▁); ours is the pieces as the model emitted them
    text = rnnt_model.endless_decode(long_wav, 64, 128, 128, total_batch_duration=11,
                                     return_timestamps=False, mode="rnnt_greedy")
    assert text == result.text and text.replace(" ", "") == \
        rnnt_meta["endless_text"].replace(" ", "")
    assert text.split() != rnnt_meta["endless_text"].split()  # this file has such joins


def test_text_rule_keeps_repeats_and_special_pieces(rnnt_model, rnnt_ref, rnnt_meta):
    from chunkformer.transducer.model import transducer_transcript

    for ids, text in zip(rnnt_meta["text_rule_ids"], rnnt_meta["text_rule_transducer"]):
        assert transducer_transcript(rnnt_model, [(i, k) for k, i in enumerate(ids)],
                                     len(ids)).text == text
    grid = rnnt_ref["text_rule_grid"]
    emitted = [(int(i), f) for f, row in enumerate(grid) for i in row if i]
    segments = transducer_transcript(rnnt_model, emitted, len(grid)).segments(0.5)
    assert [{k: s[k] for k in ("decode", "start", "end")} for s in segments] == \
        rnnt_meta["text_rule_grid_segments"]


@pytest.mark.parametrize("time_chunk", [None, 5])
def test_two_symbol_lattice_equals_the_fused_whole_lattice(rnnt_model, time_chunk):
    """Our loss (two-symbol lattice, whole or chunked joint) against torchaudio's rnnt_loss on
    the whole (B, T', U+1, V) logits with its fused log-softmax: values and gradients, on a
    padded batch (lengths differ in frames and targets)."""
    import torchaudio.functional as AF

    joint, gen = rnnt_model.joint, torch.Generator().manual_seed(3)
    enc_lens, ys_lens = torch.tensor([17, 11, 14]), torch.tensor([6, 3, 0])
    enc = torch.randn(3, 17, joint.enc_ffn.in_features, generator=gen)
    pred = torch.randn(3, 7, joint.pred_ffn.in_features, generator=gen)
    ys = torch.randint(1, joint.ffn_out.out_features, (3, 6), generator=gen)
    ys[1, 3:] = -1  # padding of any value

    def run(fn):
        e, p = enc.clone().requires_grad_(), pred.clone().requires_grad_()
        joint.zero_grad()
        loss = fn(e, p)
        (loss * torch.tensor([1.0, 2.0, 3.0])).sum().backward()
        return loss.detach(), e.grad, p.grad, joint.ffn_out.weight.grad.clone()

    ours = run(lambda e, p: rnnt_loss(joint, e, enc_lens, p, ys, ys_lens, 0, time_chunk))
    targets = torch.where(ys < 0, 0, ys).int()
    fused = run(lambda e, p: AF.rnnt_loss(joint(e, p), targets, enc_lens.int(), ys_lens.int(),
                                          blank=0, reduction="none", clamp=-1))
    assert torch.allclose(ours[0], fused[0], rtol=1e-5)
    for a, b in zip(ours[1:], fused[1:]):  # float32 sums in another order: ~1e-5 of the scale
        assert (a - b).abs().max() <= 5e-5 * b.abs().max() and b.abs().max() > 0
    joint.zero_grad()


def test_losses(rnnt_model, rnnt_ref, rnnt_meta):
    ys, ys_lens = t(rnnt_ref["loss_targets"]).long(), t(rnnt_ref["loss_target_lens"]).long()
    encs = [t(rnnt_ref[f"full_enc_{i}"]) for i in range(3)]
    lens = torch.tensor([e.size(0) for e in encs])
    enc = torch.nn.utils.rnn.pad_sequence(encs, batch_first=True)
    pred = rnnt_model.predictor(ys, ys_lens)
    theirs = t(rnnt_ref["loss_rnnt_per_utt"])
    for chunk in (None, 7, 64):
        nll = rnnt_loss(rnnt_model.joint, enc, lens, pred, ys, ys_lens, time_chunk=chunk)
        assert torch.allclose(nll.double(), theirs, rtol=1e-5)
    assert nll.mean().item() == pytest.approx(float(rnnt_ref["loss_rnnt_mean"]), rel=1e-5)
    # the hybrid objective on the reference's own (padded, eval-mode) encoder output,
    # in the reference's reduction: each term summed over the batch / B
    enc, lens = t(rnnt_ref["fwd_enc"]), t(rnnt_ref["fwd_enc_lens"]).long()
    m = rnnt_model
    pred = m.predictor(ys, ys_lens)
    l_rnnt = rnnt_loss(m.joint, enc, lens, pred, ys, ys_lens).mean()
    l_ctc = (m.ctc.loss(enc, lens, ys, ys_lens) * ys_lens).mean()
    from chunkformer.heads.attention_decoder import attention_loss
    l_att = (attention_loss(m.decoder, enc, lens, ys, ys_lens, m.sos, m.eos, m.lsm_weight)
             * (ys_lens + 1)).mean()
    for ours, key in ((l_rnnt, "fwd_loss_rnnt"), (l_ctc, "fwd_loss_ctc"),
                      (l_att, "fwd_loss_att")):
        assert ours.item() == pytest.approx(float(rnnt_ref[key]), rel=1e-5), key
    total = 0.75 * l_rnnt + 0.1 * l_ctc + 0.15 * l_att
    assert total.item() == pytest.approx(float(rnnt_ref["fwd_loss"]), rel=1e-5)


def test_entry_points_default_to_the_transducer_search(rnnt_model, rnnt_meta, rnnt_wav,
                                                       rnnt_dir, tmp_path):
    """As upstream, a transducer folder decodes with its transducer by default: the API and
    recognize give the reference's batch_decode texts; recognize writes rnnt_beam n-best."""
    import json

    from chunkformer.bin.recognize import main as recognize

    paths = [str(rnnt_wav(w)) for w in rnnt_meta["wavs"][:2]]
    assert rnnt_model.batch_decode(paths) == rnnt_meta["batch_decode_text"][:2]
    folder = tmp_path / "audio"
    folder.mkdir()
    for p in paths:
        (folder / Path(p).name).symlink_to(p)
    args = ["--model_dir", str(rnnt_dir / "model"), "--data", str(folder), "--chunk_size",
            "64", "--left_context_size", "128", "--right_context_size", "128"]
    recognize(args + ["--output_dir", str(tmp_path / "greedy")])
    texts = [line.rstrip("\n").split(" ", 1)[1] for line in open(tmp_path / "greedy" / "text")]
    assert texts == rnnt_meta["batch_decode_text"][:2]
    recognize(args + ["--output_dir", str(tmp_path / "beam"), "--mode", "rnnt_beam",
                      "--beam_size", "3", "--nbest", "2"])
    rows = [json.loads(line) for line in open(tmp_path / "beam" / "nbest.jsonl")]
    assert len(rows) == 2 and all(len(r["nbest"]) == 2 for r in rows)
    assert all(r["nbest"][0]["score"] >= r["nbest"][1]["score"] for r in rows)


def test_recognize_takes_the_symbol_cap(rnnt_meta, rnnt_ref, rnnt_wav, rnnt_dir,
                                       ref_model_dir, tmp_path, capsys):
    """``--max_symbols 2`` gives the reference's search with cap 2 (masked batch 64/128/128);
    a cap below 1, or one for a model without a transducer, is a one-line error."""
    from chunkformer.bin.recognize import main as recognize
    from chunkformer.transducer.model import transducer_transcript

    folder = tmp_path / "audio"
    folder.mkdir()
    for w in rnnt_meta["wavs"][:2]:
        (folder / Path(w).name).symlink_to(rnnt_wav(w))
    args = ["--data", str(folder), "--chunk_size", "64", "--left_context_size", "128",
            "--right_context_size", "128", "--output_dir", str(tmp_path / "out")]
    recognize(args + ["--model_dir", str(rnnt_dir / "model"), "--max_symbols", "2"])
    texts = [line.rstrip("\n").split(" ", 1)[1] for line in open(tmp_path / "out" / "text")]
    model = ChunkFormerModel.from_pretrained(rnnt_dir / "model")
    expected = []
    for i in range(2):
        ids, frames = rnnt_ref[f"greedy2_mb_ids_{i}"], rnnt_ref[f"greedy2_mb_frames_{i}"]
        expected.append(transducer_transcript(model, list(zip(ids.tolist(), frames.tolist())),
                                              int(frames.max()) + 1).text)
    assert texts == expected and texts != rnnt_meta["batch_decode_text"][:2]
    for model_dir, cap, message in ((rnnt_dir / "model", "0", "must be a whole number >= 1"),
                                    (ref_model_dir, "4", "only a transducer model's search")):
        with pytest.raises(SystemExit) as exit_:
            recognize(args + ["--model_dir", str(model_dir), "--max_symbols", cap])
        assert message in str(exit_.value)
    with pytest.raises(ValueError, match="whole number"):
        model.max_symbols = 1.5


@torch.no_grad()
def test_encoder_outputs_match(rnnt_model, rnnt_ref):
    """Full context alone and the masked batch at 64/128/128 (what batch_decode searches)."""
    feats = [t(rnnt_ref[f"fbank_{i}"]) for i in range(3)]
    for i, f in enumerate(feats):
        enc, _ = rnnt_model.encode(f[None], torch.tensor([f.size(0)]), 0, 0, 0)
        close(enc[0], rnnt_ref[f"full_enc_{i}"])
    for i, enc in enumerate(rnnt_model.encoder.forward_list(feats, 64, 128, 128)):
        close(enc, rnnt_ref[f"mb_enc_{i}"])


def test_hybrid_loss_trains_under_bf16_autocast(rnnt_model):
    import copy

    model = copy.deepcopy(rnnt_model).train()
    gen = torch.Generator().manual_seed(0)
    feats, lens = torch.randn(2, 300, 80, generator=gen), torch.tensor([300, 200])
    ys, ys_lens = torch.randint(3, 250, (2, 10), generator=gen), torch.tensor([10, 6])
    for chunk in (None, 8):
        model.time_chunk = chunk
        model.zero_grad()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = model(feats, lens, ys, ys_lens, 16, 16, 4)
        out["loss"].backward()
        assert torch.isfinite(out["loss"]) and out["loss_rnnt"] > 0 and out["loss_ctc"] > 0
        grads = [p.grad for n, p in model.named_parameters() if n.startswith(("predictor",
                                                                             "joint"))]
        assert all(g is not None and torch.isfinite(g).all() for g in grads)
