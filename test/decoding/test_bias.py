"""Hotwords and LM fusion inside CTC prefix beam search, on constructed posteriors: what each
adds, that a partial match costs nothing, that any segmentation of a phrase matches, that
fusion fixes an acoustically ambiguous word, block-wise search, n-best over spans."""
import math

import pytest
import torch

from chunkformer.data.vocab import Vocabulary
from chunkformer.decoding.bias import DecodingBias, hotword_graph, make_bias
from chunkformer.decoding.search import Hypothesis, PrefixBeamSearch, ctc_prefix_beam_search
from chunkformer.decoding.spans import combine_nbest
from chunkformer.lm.arpa import NgramLM
from chunkformer.lm.kneser_ney import count_ngrams, estimate

pytestmark = pytest.mark.usefixtures("one_thread")

TOKENS = ["<blank>", "<unk>", "▁tôi", "▁mở", "▁thẻ", "▁hoa", "▁mai", "▁hoà", "▁may", "▁",
          "h", "o", "a", "m", "i", "<sos/eos>"]
VOCAB = Vocabulary(TOKENS)
ID = {t: i for i, t in enumerate(TOKENS)}


def posteriors(columns):
    """Frames from [{token: probability}] (the rest to blank), each followed by a blank
    frame, as (T, V) log-probabilities."""
    rows = []
    for column in columns:
        p = torch.full((len(TOKENS),), 1e-6)
        for token, prob in column.items():
            p[ID[token]] = prob
        p[0] = max(1.0 - sum(column.values()), 1e-6)
        rows += [p / p.sum(), torch.tensor([1.0] + [1e-6] * (len(TOKENS) - 1))]
    return torch.stack(rows).log()


def text(hyp):
    return VOCAB.ids_to_text(hyp.ids)


AMBIGUOUS = posteriors([{"▁tôi": .9}, {"▁mở": .9}, {"▁thẻ": .9},
                        {"▁hoà": .55, "▁hoa": .4}, {"▁may": .55, "▁mai": .4}])


def test_without_bias_the_acoustics_win():
    assert text(ctc_prefix_beam_search(AMBIGUOUS, 8)[0]) == "tôi mở thẻ hoà may"


def test_a_hotword_wins_an_ambiguous_phrase():
    bias = make_bias(VOCAB, hotwords=["Hoa Mai"])
    best = ctc_prefix_beam_search(AMBIGUOUS, 8, bias=bias)[0]
    assert text(best) == "tôi mở thẻ hoa mai"
    # boost 2 per token of the phrase (▁hoa ▁mai): 4, in log-probability units
    assert best.bias == pytest.approx(4.0) and best.total == pytest.approx(best.score + 4.0)


def test_a_hotword_does_not_invent_what_was_not_said():
    clear = posteriors([{"▁tôi": .9}, {"▁mở": .9}, {"▁thẻ": .97, "▁hoa": .01}])
    hyps = ctc_prefix_beam_search(clear, 8, bias=make_bias(VOCAB, hotwords=["hoa mai"]))
    assert text(hyps[0]) == "tôi mở thẻ"
    assert hyps[0].bias == 0.0  # and a hypothesis that began the phrase kept nothing
    started = [h for h in hyps if text(h).endswith("hoa")]
    assert started and all(h.bias == 0.0 for h in started)


def test_any_segmentation_of_a_phrase_matches():
    """The model spells "hoa mai" in single characters; the phrase was split as ▁hoa ▁mai."""
    chars = [{"▁": .9}, {"h": .9}, {"o": .9}, {"a": .9}, {"▁": .9}, {"m": .9}, {"a": .9},
             {"i": .45, "▁may": .5}]
    lp = posteriors(chars)
    assert text(ctc_prefix_beam_search(lp, 8)[0]) != "hoa mai"
    best = ctc_prefix_beam_search(lp, 8, bias=make_bias(VOCAB, hotwords=[("hoa mai", 1.0)]))[0]
    assert text(best) == "hoa mai" and best.bias == pytest.approx(2.0)


def test_hotword_graph_checks_phrases():
    from chunkformer.data.tokenizer import VocabTokenizer
    with pytest.raises(ValueError, match="cannot spell"):
        hotword_graph([("hoa đào", 2.0)], VocabTokenizer(VOCAB))
    with pytest.raises(ValueError, match="empty once normalised"):
        hotword_graph([("?!", 2.0)], VocabTokenizer(VOCAB))
    with pytest.raises(ValueError, match="needs hotwords, a language model or both"):
        DecodingBias(TOKENS)


def lm_of(sentences, order=2):
    return NgramLM(estimate(count_ngrams([s.split() for s in sentences], order)).entries)


LM = lm_of(["tôi mở thẻ hoa mai"] * 5 + ["tôi mở thẻ"] * 3 + ["hoà may"])


def test_lm_fusion_fixes_an_ambiguous_word():
    bias = DecodingBias(TOKENS, lm=LM, lm_weight=1.0, word_bonus=1.0)
    best = ctc_prefix_beam_search(AMBIGUOUS, 8, bias=bias)[0]
    assert text(best) == "tôi mở thẻ hoa mai"
    words = "tôi mở thẻ hoa mai".split()
    lm = math.log(10) * LM.sentence_log10(words)
    assert best.bias == pytest.approx(lm + len(words))  # weight 1, bonus 1 per word
    assert bias.parts(best.ids) == {"lm": pytest.approx(lm), "words": 5}


def test_lm_weight_zero_only_adds_the_word_bonus():
    bias = DecodingBias(TOKENS, lm=LM, lm_weight=0.0, word_bonus=0.5)
    plain, fused = ctc_prefix_beam_search(AMBIGUOUS, 8), \
        ctc_prefix_beam_search(AMBIGUOUS, 8, bias=bias)
    assert fused[0].ids == plain[0].ids and fused[0].score == pytest.approx(plain[0].score)
    assert fused[0].bias == pytest.approx(0.5 * 5)


def test_the_bias_adds_up_token_by_token():
    """extend + finish over any labelling equals what ``parts`` computes from the whole."""
    bias = make_bias(VOCAB, hotwords=["hoa mai", "thẻ hoa"], lm=LM, lm_weight=0.7,
                     word_bonus=0.3)
    for labelling in (["▁tôi", "▁mở", "▁thẻ", "▁hoa", "▁mai"], ["▁", "h", "o", "a", "▁mai"],
                      ["▁thẻ", "▁hoa", "▁may"], ["h", "o", "▁hoa"], []):
        ids = [ID[t] for t in labelling]
        state, total = bias.initial(), 0.0
        for token in ids:
            delta, state = bias.extend(state, token)
            total += delta
        total += bias.finish(state)
        parts = bias.parts(ids)
        assert total == pytest.approx(parts["hotwords"] + 0.7 * parts["lm"]
                                      + 0.3 * parts["words"])


@pytest.mark.parametrize("block", [1, 3, 7])
def test_blockwise_search_equals_one_call(block):
    gen = torch.Generator().manual_seed(block)
    logits = torch.randn(60, len(TOKENS), generator=gen) * 3
    lp = logits.log_softmax(-1)
    bias = make_bias(VOCAB, hotwords=["hoa mai"], lm=LM, lm_weight=0.5, word_bonus=0.5)
    whole = ctc_prefix_beam_search(lp, 6, bias=bias)
    search = PrefixBeamSearch(6, bias=bias)
    for start in range(0, lp.size(0), block):
        search.advance(lp[start:start + block])
    parts = search.hypotheses()
    assert [(h.ids, h.times) for h in parts] == [(h.ids, h.times) for h in whole]
    assert [h.total for h in parts] == pytest.approx([h.total for h in whole])


def test_nbest_over_spans_adds_scores():
    a = [(-1.0, Hypothesis((2,), -1.0, (0,))), (-3.0, Hypothesis((3,), -3.0, (1,)))]
    b = [(-0.5, Hypothesis((4,), -0.5, (5,))), (-2.0, Hypothesis((5,), -1.0, (6,), -1.0))]
    out = combine_nbest(a, b, 3)
    assert [(s, h.ids) for s, h in out] == [(-1.5, (2, 4)), (-3.0, (2, 5)), (-3.5, (3, 4))]
    assert out[1][1].bias == -1.0 and out[1][1].times == (0, 6)
    assert combine_nbest([], a, 1) == a[:1]
