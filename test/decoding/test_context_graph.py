"""The hotword context graph: bonuses for matched tokens, taken back when a match is
abandoned, banked when a phrase completes; overlapping and nested phrases; the hotwords file."""
import random

import pytest

from chunkformer.decoding.context_graph import ContextGraph, ContextState, read_hotwords


def run(graph, tokens):
    """→ (per-token deltas, the finish delta, total)."""
    state, deltas = ContextState(), []
    for t in tokens:
        d, state = graph.step(state, t)
        deltas.append(d)
    end = graph.finish(state)
    return deltas, end, sum(deltas) + end


def test_a_match_earns_its_boost_per_token():
    deltas, end, total = run(ContextGraph([[1, 2, 3]], [2.0]), [7, 1, 2, 3, 7])
    assert deltas == [0, 2, 2, 2, 0] and end == 0 and total == 6


def test_an_abandoned_match_is_taken_back():
    g = ContextGraph([[1, 2, 3]], [2.0])
    assert run(g, [1, 2, 5])[0] == [2, 2, -4]
    assert run(g, [1, 2]) == ([2, 2], -4, 0)  # unfinished at the end
    assert run(g, [1, 2, 1, 2, 3])[2] == 6  # restart inside: only the completed one counts


def test_falling_back_to_a_suffix_that_is_a_phrase_prefix():
    g = ContextGraph([[1, 2, 3], [2, 4]], [2.0, 2.0])
    deltas, _, total = run(g, [1, 2, 4])  # "1 2" abandoned, "2 4" completed
    assert deltas == [2, 2, 0] and total == 4


def test_nested_and_suffix_phrases():
    g = ContextGraph([[1, 2], [1, 2, 3]], [2.0, 2.0])
    assert run(g, [1, 2])[2] == 4 and run(g, [1, 2, 3])[2] == 6  # the longer one adds its rest
    assert run(g, [1, 2, 5])[2] == 4  # the completed shorter phrase is banked
    g = ContextGraph([[2, 3], [1, 2, 3, 4]], [2.0, 2.0])
    assert run(g, [1, 2, 3, 5])[2] == 4  # "2 3" inside an abandoned longer match
    assert run(g, [1, 2, 3, 4])[2] == 12  # both


def test_boosts_per_phrase_and_shared_prefixes():
    g = ContextGraph([[1, 2], [1, 3]], [1.0, 3.0])
    assert run(g, [1, 2])[2] == 2 and run(g, [1, 3])[2] == 6
    assert g.num_phrases == 2
    with pytest.raises(ValueError, match="2 phrases but 1 boosts"):
        ContextGraph([[1], [2]], [1.0])


def test_no_completed_phrase_no_bonus_random():
    rng = random.Random(0)
    for _ in range(2000):
        phrases = [[rng.randrange(4) for _ in range(rng.randint(1, 4))]
                   for _ in range(rng.randint(1, 4))]
        g = ContextGraph(phrases, [rng.choice([1.0, 2.0, 3.5]) for _ in phrases])
        seq = [rng.randrange(5) for _ in range(rng.randint(0, 12))]
        total = run(g, seq)[2]
        completed = any(seq[i:i + len(p)] == p for p in phrases for i in range(len(seq)))
        assert total >= -1e-9 and (completed or abs(total) < 1e-9), (phrases, seq, total)


def test_read_hotwords(tmp_path):
    f = tmp_path / "hot.txt"
    f.write_text("# products\nthẻ tín dụng\nvay thế chấp\t3.5\n\nsacombank : 1.5\n",
                 encoding="utf-8")
    assert read_hotwords(f) == [("thẻ tín dụng", 2.0), ("vay thế chấp", 3.5),
                                ("sacombank", 1.5)]
    f.write_text("a\nb\tx\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"hot.txt:2: boost 'x' is not a number"):
        read_hotwords(f)
    f.write_text("a\t-1\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"hot.txt:1: boost must be > 0"):
        read_hotwords(f)
    f.write_text("# nothing\n", encoding="utf-8")
    with pytest.raises(ValueError, match="no hotwords"):
        read_hotwords(f)
