"""CTC greedy / prefix beam search against hand-built and brute-force cases; rescoring."""
import itertools
import math
import time

import pytest
import torch

from chunkformer.decoding.search import (Hypothesis, attention_rescoring, ctc_greedy,
                                         ctc_prefix_beam_search)
from chunkformer.heads.attention_decoder import BiTransformerDecoder, TransformerDecoder


pytestmark = pytest.mark.usefixtures("one_thread")


def frames(labels, v, p=0.9):
    """Log-probs (T, V) whose argmax at frame t is labels[t], with probability p."""
    probs = torch.full((len(labels), v), (1 - p) / (v - 1))
    probs[torch.arange(len(labels)), torch.tensor(labels)] = p
    return probs.log()


def peaky(t, v, generator, p_blank=0.7, peak=12.0):
    """Random log-probs: each frame peaked on blank (p_blank of frames) or a random token."""
    best = torch.randint(1, v, (t,), generator=generator)
    best[torch.rand(t, generator=generator) < p_blank] = 0
    logits = torch.randn(t, v, generator=generator)
    logits[torch.arange(t), best] += peak
    return logits.log_softmax(-1)


def test_greedy_collapses_then_drops_blanks():
    a, b = 1, 2
    ids, times = ctc_greedy(frames([a, a, 0, a, b, b], 3))
    assert ids == [a, a, b] and times == [0, 3, 4]
    assert ctc_greedy(frames([0, 0], 3)) == ([], [])


@pytest.mark.parametrize("seed", range(3))
def test_beam_one_equals_greedy_on_peaky(seed):
    log_probs = peaky(300, 20, torch.Generator().manual_seed(seed))
    ids, _ = ctc_greedy(log_probs)
    (best,) = ctc_prefix_beam_search(log_probs, beam_size=1)
    assert list(best.ids) == ids and len(best.times) == len(ids)


def brute_force(log_probs):
    """Log-probability of every labelling, by summing over all T^V paths."""
    t, v = log_probs.shape
    totals = {}
    for path in itertools.product(range(v), repeat=t):
        labels = tuple(k for i, k in enumerate(path) if k != 0 and (i == 0 or k != path[i - 1]))
        lp = sum(log_probs[i, k].item() for i, k in enumerate(path))
        totals[labels] = math.log(math.exp(totals.get(labels, -math.inf)) + math.exp(lp))
    return totals


@pytest.mark.parametrize("seed", range(4))
def test_beam_matches_brute_force(seed):
    log_probs = torch.randn(4, 3, generator=torch.Generator().manual_seed(seed)).log_softmax(-1)
    truth = brute_force(log_probs)
    hyps = ctc_prefix_beam_search(log_probs, beam_size=50, prune_threshold=1.0)
    assert hyps[0].ids == max(truth, key=truth.get)
    assert len(hyps) == len(truth)
    for h in hyps:
        assert h.score == pytest.approx(truth[h.ids], abs=1e-5)
    assert [h.score for h in hyps] == sorted((h.score for h in hyps), reverse=True)


def test_times_are_peak_frames():
    a, b = 1, 2
    log_probs = torch.tensor([[0.3, 0.6, 0.1], [0.05, 0.9, 0.05], [0.9, 0.05, 0.05],
                              [0.02, 0.03, 0.95], [0.2, 0.1, 0.7]]).log()
    best = ctc_prefix_beam_search(log_probs, beam_size=3)[0]
    assert best.ids == (a, b) and best.times == (1, 3)
    assert ctc_greedy(log_probs) == ([a, b], [0, 3])


def test_skipped_blank_frames_still_separate_repeats():
    a = 1
    log_probs = frames([a, 0, 0, 0, a, 0], 3, p=0.9999)
    best = ctc_prefix_beam_search(log_probs)[0]
    assert best.ids == (a, a) and best.times == (0, 4)
    exact = ctc_prefix_beam_search(log_probs, prune_threshold=1.0)[0]
    assert exact.ids == (a, a) and best.score == pytest.approx(exact.score, abs=1e-3)


def test_one_hour_is_fast():
    log_probs = peaky(45000, 256, torch.Generator().manual_seed(0))
    start = time.perf_counter()
    hyps = ctc_prefix_beam_search(log_probs, beam_size=10)
    elapsed = time.perf_counter() - start
    assert list(hyps[0].ids) == ctc_greedy(log_probs)[0]
    assert len(hyps) == 10
    assert elapsed < 10.0, f"beam search over an hour of frames took {elapsed:.1f} s"


SOS = EOS = 9


def manual_score(decoder, memory, ids):
    """log P(ids + eos | sos + ids), one hypothesis at a time."""
    ys_in = torch.tensor([[SOS, *ids]])
    logits, _ = decoder(memory[None], torch.tensor([memory.size(0)]), ys_in,
                        torch.tensor([len(ids) + 1]))
    lp = logits[0].log_softmax(-1)
    return sum(lp[i, k].item() for i, k in enumerate([*ids, EOS]))


@torch.no_grad()
def test_rescoring_picks_decoder_favourite():
    torch.manual_seed(0)
    decoder = TransformerDecoder(10, 8, attention_heads=2, linear_units=16, num_blocks=1).eval()
    memory = torch.randn(6, 8)
    hyps = [Hypothesis(ids, -float(i), ()) for i, ids in
            enumerate([(1, 2, 3), (1, 2), (4,), (), (3, 3, 5, 1)])]
    best, scores = attention_rescoring(decoder, memory, hyps, SOS, EOS, ctc_weight=0.0)
    expected = [manual_score(decoder, memory, h.ids) for h in hyps]
    assert scores == pytest.approx(expected, abs=1e-4)
    assert best == max(range(len(hyps)), key=expected.__getitem__)
    _, mixed = attention_rescoring(decoder, memory, hyps, SOS, EOS, ctc_weight=0.5)
    assert mixed == pytest.approx([e + 0.5 * h.score for e, h in zip(expected, hyps)], abs=1e-4)
    # a decoding bias (hotwords, LM) counts in full, unweighted
    biased = [Hypothesis(h.ids, h.score, (), bias=float(k)) for k, h in enumerate(hyps)]
    _, with_bias = attention_rescoring(decoder, memory, biased, SOS, EOS, ctc_weight=0.5)
    assert with_bias == pytest.approx([m + k for k, m in enumerate(mixed)], abs=1e-4)


@torch.no_grad()
def test_rescoring_with_right_to_left_decoder():
    torch.manual_seed(0)
    decoder = BiTransformerDecoder(10, 8, attention_heads=2, linear_units=16, num_blocks=1,
                                   r_num_blocks=1).eval()
    memory = torch.randn(6, 8)
    hyps = [Hypothesis((1, 2, 3), -1.0, ()), Hypothesis((4, 1), -2.0, ())]
    best, scores = attention_rescoring(decoder, memory, hyps, SOS, EOS, ctc_weight=0.3,
                                       reverse_weight=0.4)
    expected = [0.6 * manual_score(decoder.left_decoder, memory, h.ids)
                + 0.4 * manual_score(decoder.right_decoder, memory, h.ids[::-1])
                + 0.3 * h.score for h in hyps]
    assert scores == pytest.approx(expected, abs=1e-4)
    assert best == max(range(2), key=expected.__getitem__)
