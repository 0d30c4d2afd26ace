"""Batched transducer greedy search against the rule it implements, one frame at a time:
any look-ahead, any batch (lengths differing), any cut into blocks gives the same tokens and
frames; the predictor's one-step cells equal ``torch.nn.LSTM``."""
import pytest
import torch

from chunkformer.transducer.heads import RNNPredictor, TransducerJoint
from chunkformer.transducer.search import greedy_search

pytestmark = pytest.mark.usefixtures("one_thread")


def frame_by_frame(predictor, joint, enc, max_symbols):
    """The greedy rule written plainly for one utterance: (T', D) → [(token, frame)]."""
    state = predictor.initial_state(1)
    pred, state = predictor.step(torch.tensor([predictor.blank]), state)
    out = []
    with torch.no_grad():
        for t in range(enc.size(0)):
            for _ in range(max_symbols):
                token = joint(enc[t][None, None], pred[None])[0, 0, 0].log_softmax(-1).argmax()
                if token.item() == predictor.blank:
                    break
                out.append((token.item(), t))
                pred, state = predictor.step(token[None], state)
    return out


@pytest.fixture(scope="module", params=[1, 2])
def heads(request):
    torch.manual_seed(request.param)
    predictor = RNNPredictor(30, 8, 16, request.param, 12).eval()
    joint = TransducerJoint(30, 24, 12, 20).eval()
    with torch.no_grad():  # blank about half the time: runs of blanks and of symbols
        joint.ffn_out.bias[0] += 1.0
    return predictor, joint


@pytest.mark.parametrize("lookahead", [1, 2, 3, 8])
@pytest.mark.parametrize("max_symbols", [2, 64])
def test_batched_with_lookahead_equals_frame_by_frame(heads, lookahead, max_symbols):
    predictor, joint = heads
    gen = torch.Generator().manual_seed(lookahead)
    encs = [torch.randn(n, 24, generator=gen) * 2 for n in (1, 13, 40, 7)]
    expected = [frame_by_frame(predictor, joint, e, max_symbols) for e in encs]
    assert sum(map(len, expected)) > 20
    if max_symbols == 2:
        assert any([f for _, f in out].count(f) == 2 for out in expected for _, f in out)
    padded = torch.nn.utils.rnn.pad_sequence(encs, batch_first=True)
    lens = torch.tensor([e.size(0) for e in encs])
    got, _ = greedy_search(predictor, joint, padded, lens, max_symbols, lookahead=lookahead)
    assert got == expected
    # in blocks, the state carried: the same search, frame numbers counted per block
    carry, start, pieces = None, 0, [[] for _ in encs]
    for stop in (5, 6, 21, 40):
        block = padded[:, start:stop]
        block_lens = (lens - start).clamp(0, stop - start)
        out, carry = greedy_search(predictor, joint, block, block_lens, max_symbols,
                                   carry=carry, lookahead=lookahead)
        for piece, o in zip(pieces, out):
            piece += [(token, frame + start) for token, frame in o]
        start = stop
    assert pieces == expected


def test_step_equals_the_lstm(heads):
    predictor, _ = heads
    tokens = torch.tensor([[0, 5, 9, 9, 29], [0, 1, 2, 3, 4]])
    with torch.no_grad():
        whole = predictor(tokens[:, 1:])  # (B, U + 1, P): after blank, y_1 … y_u
        state = predictor.initial_state(2)
        for u in range(tokens.size(1)):
            out, state = predictor.step(tokens[:, u], state)
            torch.testing.assert_close(out, whole[:, u], atol=1e-6, rtol=1e-5)
