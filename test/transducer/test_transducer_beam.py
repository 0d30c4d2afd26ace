"""Transducer beam search: beam 1 is greedy search, a wider beam never scores worse than
greedy on the model's own score, block by block equals all at once, n-best and hotwords."""
import pytest
import torch

from chunkformer.decoding.batch import decode_features
from chunkformer.transducer.heads import RNNPredictor, TransducerJoint
from chunkformer.transducer.search import beam_search, greedy_search

pytestmark = pytest.mark.usefixtures("one_thread")


def greedy_path_score(predictor, joint, enc, emitted, max_symbols=64):
    """log-probability of the greedy alignment, replayed decision by decision."""
    state = predictor.initial_state(1)
    pred, state = predictor.step(torch.tensor([0]), state)
    total, i = 0.0, 0
    with torch.no_grad():
        for t in range(enc.size(0)):
            count = 0
            while True:
                logp = joint(enc[t][None, None], pred[None])[0, 0, 0].log_softmax(-1)
                if i < len(emitted) and emitted[i][1] == t:
                    total += logp[emitted[i][0]].item()
                    pred, state = predictor.step(torch.tensor([emitted[i][0]]), state)
                    i, count = i + 1, count + 1
                    if count == max_symbols:
                        break
                else:
                    total += logp[0].item()
                    break
    return total


def models():
    """The reference vector's transducer heads and two random ones."""
    yield "reference", None
    for seed in (1, 2):
        torch.manual_seed(seed)
        joint = TransducerJoint(40, 24, 12, 20).eval()
        with torch.no_grad():  # mostly blank, a few symbols on some frames, as when trained
            joint.ffn_out.bias[0] += 2.5
        yield f"random{seed}", (RNNPredictor(40, 8, 16, 1, 12).eval(), joint)


@pytest.mark.parametrize("name, heads", list(models()))
def test_beam_one_is_greedy_and_wider_beams_score_no_worse(name, heads, rnnt_model, rnnt_ref):
    if heads is None:
        predictor, joint = rnnt_model.predictor, rnnt_model.joint
        encs = [torch.from_numpy(rnnt_ref[f"mb_enc_{i}"]) for i in range(3)]
    else:
        predictor, joint = heads
        gen = torch.Generator().manual_seed(len(name))
        encs = [torch.randn(n, 24, generator=gen) * 2 for n in (30, 55)]
    for enc in encs:
        greedy, _ = greedy_search(predictor, joint, enc[None], torch.tensor([enc.size(0)]))
        one = beam_search(predictor, joint, enc, 1)[0]
        assert list(one.ids) == [i for i, _ in greedy[0]]
        assert list(one.times) == [f for _, f in greedy[0]]
        path = greedy_path_score(predictor, joint, enc, greedy[0])
        assert one.score == pytest.approx(path, abs=1e-3)
        for beam in (2, 4, 8):
            best = beam_search(predictor, joint, enc, beam)
            assert best[0].score >= path - 1e-4, (beam, best[0].score, path)
            assert [h.rank for h in best] == sorted((h.rank for h in best), reverse=True)


def test_blocks_equal_all_at_once(rnnt_model, rnnt_ref):
    enc = torch.from_numpy(rnnt_ref["mb_enc_2"])
    whole = beam_search(rnnt_model.predictor, rnnt_model.joint, enc, 4)
    carry, start = None, 0
    for stop in (17, 18, 90, 200, enc.size(0)):
        carry = beam_search(rnnt_model.predictor, rnnt_model.joint, enc[start:stop], 4,
                            carry=carry, first_frame=start)
        start = stop
    assert [(h.ids, h.times) for h in carry] == [(h.ids, h.times) for h in whole]
    assert [h.score for h in carry] == pytest.approx([h.score for h in whole])


def test_decoding_modes_nbest_and_hotwords(rnnt_model, rnnt_ref):
    feats = [torch.from_numpy(rnnt_ref[f"fbank_{i}"]) for i in (0, 1)]
    greedy = decode_features(rnnt_model, feats, 64, 128, 128, mode="rnnt_greedy")
    one = decode_features(rnnt_model, feats, 64, 128, 128, mode="rnnt_beam", beam_size=1)
    assert [r.ids for r in one] == [r.ids for r in greedy]
    wide = decode_features(rnnt_model, feats, 64, 128, 128, mode="rnnt_beam", beam_size=4)
    for r in wide:
        scores = [s for s, _ in r.nbest]
        assert len(r.nbest) == 4 and scores == sorted(scores, reverse=True)
        assert list(r.nbest[0][1].ids) == r.ids
    # boosting the words of the runner-up makes it win
    runner_up = rnnt_model.vocab.ids_to_text(wide[1].nbest[1][1].ids)
    assert runner_up != wide[1].text
    phrase = " ".join(w for w in runner_up.split() if "<" not in w)
    bias = rnnt_model.decoding_bias(hotwords=[(phrase, 3.0)])
    boosted = decode_features(rnnt_model, feats[1:], 64, 128, 128, mode="rnnt_beam",
                              beam_size=4, bias=bias)[0]
    assert phrase in boosted.text and boosted.nbest[0][1].bias > 0
    with pytest.raises(ValueError, match="need a beam mode"):
        decode_features(rnnt_model, feats, 64, 128, 128, mode="rnnt_greedy", bias=bias)


def test_long_form_beam_carries_the_beam(rnnt_model, rnnt_ref, rnnt_wav, rnnt_meta):
    """Beam 1 over the long file's six segments, the beam carried across them, is the
    reference's single greedy search over the whole file."""
    from chunkformer.decoding.endless import decode_long

    result = decode_long(rnnt_model, str(rnnt_wav(rnnt_meta["long_wav"])), 64, 128, 128,
                         total_batch_duration=11, mode="rnnt_beam", beam_size=1)
    assert result.ids == rnnt_ref["endless_ids"].tolist()
    assert [tok.first for tok in result.tokens] == rnnt_ref["endless_frames"].tolist()
