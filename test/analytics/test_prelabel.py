"""Clustering (confidence on a constructed case, average linkage against brute force), the rule
layer (every condition, order, first match, clear errors) and the prelabel CLI end to end."""
import csv
import itertools
import json
import subprocess
import sys

import numpy as np
import pytest

from chunkformer.analytics.cluster import agglomerative, confidence, kmeans, nearest, unit
from chunkformer.analytics.rules import Call, RuleError, RuleSet


def test_confidence_on_a_constructed_case():
    centres = np.eye(3)[:2]  # two orthogonal centres in 3-D
    x = np.array([[1, 0, 0], [0, 1, 0], [1, 1, 0], [1, 0.2, 0], [0.2, 1, 0.1]])
    labels = np.array([0, 1, 0, 0, 1])
    c = confidence(x, labels, centres)
    assert c[0] == pytest.approx(1.0) and c[1] == pytest.approx(1.0)
    assert c[2] == pytest.approx(0.0, abs=1e-9)  # halfway between the two
    assert 0.5 < c[3] < 1 and 0.5 < c[4] < 1
    wrong = confidence(x[3:4], np.array([1]), centres)  # assigned to the farther centre
    assert wrong[0] == 0.0


def test_kmeans_recovers_separated_groups():
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(4, 12)) * 4
    x = np.concatenate([c + rng.normal(size=(25, 12)) for c in centres])
    labels, found = kmeans(x, 4, seed=1)
    truth = np.repeat(np.arange(4), 25)
    assert all(len(set(labels[truth == g])) == 1 for g in range(4))
    assert len(set(labels)) == 4 and found.shape == (4, 12)
    assert confidence(x, labels, found).mean() > 0.8
    with pytest.raises(ValueError, match="k = 0"):
        kmeans(x, 0)


def _brute_average_linkage(x, k):
    d = 1 - unit(x) @ unit(x).T
    groups = [[i] for i in range(len(x))]
    while len(groups) > k:
        a, b = min(itertools.combinations(range(len(groups)), 2),
                   key=lambda p: d[np.ix_(groups[p[0]], groups[p[1]])].mean())
        groups[a] += groups.pop(b)
    labels = np.zeros(len(x), dtype=int)
    for j, g in enumerate(groups):
        labels[g] = j
    return labels


@pytest.mark.parametrize("seed", range(4))
def test_agglomerative_is_average_linkage(seed):
    x = np.random.default_rng(seed).normal(size=(20, 5))
    for k in (1, 2, 4, 7):
        ours, brute = agglomerative(x, k), _brute_average_linkage(x, k)
        same = (ours[:, None] == ours[None]) == (brute[:, None] == brute[None])
        assert same.all(), k


def test_nearest():
    index, sims = nearest(np.array([[1.0, 0.1]]), np.array([[0, 1.0], [1, 0], [1, 1.0]]), 2)
    assert index.tolist() == [[1, 2]] and sims[0, 0] > sims[0, 1]


RULES = """
rules:
  - label: promise_to_pay
    confidence: 0.9
    when:
      keywords_any: ["sẽ thanh toán", "trả trước"]
      keywords_none: ["không trả"]
      order: ["nhắc", "thanh toán"]
  - label: complaint
    confidence: 0.7
    when:
      head: {emotion: {class: angry, min: 0.6}}
      intent_order: [verify, complaint]
  - label: vip
    when: {cluster: [3], cluster_label: vip}
fallback: cluster
"""


def test_rules_each_condition_and_first_match(tmp_path):
    (tmp_path / "r.yaml").write_text(RULES)
    rules = RuleSet.load(tmp_path / "r.yaml")
    pay = Call("a", "Em nhắc anh, tôi SẼ thanh toán vào thứ hai.")
    p = rules.propose(pay)
    assert (p.label, p.confidence) == ("promise_to_pay", 0.9)
    assert "'sẽ thanh toán'" in p.reason and "'nhắc' … then 'thanh toán'" in p.reason
    assert rules.propose(Call("b", "thanh toán rồi nhắc tôi sẽ thanh toán")).label == \
        "promise_to_pay"  # "nhắc" then a later "thanh toán"
    assert rules.propose(Call("c", "sẽ thanh toán rồi em nhắc")).label is None  # wrong order
    assert rules.propose(Call("d", "em nhắc tôi sẽ thanh toán nhưng không trả")).label is None
    angry = Call("e", "", heads={"emotion": ("angry", 0.8)}, intents=["greet", "verify",
                                                                      "complaint"])
    assert rules.propose(angry).label == "complaint"
    assert "emotion head: angry (0.80)" in rules.propose(angry).reason
    assert rules.propose(Call("f", "", heads={"emotion": ("angry", 0.5)},
                              intents=["verify", "complaint"])).label is None  # below min
    assert rules.propose(Call("g", "", heads={"emotion": ("angry", 0.9)},
                              intents=["complaint", "verify"])).label is None  # order
    vip = rules.propose(Call("h", "", cluster=3, cluster_label="vip"))
    assert vip.label == "vip" and vip.confidence == 0.8
    fallback = rules.propose(Call("i", "", cluster=1, cluster_label="other",
                                  cluster_confidence=0.42))
    assert fallback.label == "other" and fallback.confidence == 0.42
    assert "no rule fired" in fallback.reason


@pytest.mark.parametrize("text,message", [
    ("rules: [{when: {cluster: [1]}}]", "rule 1: a rule needs a label"),
    ("rules: [{label: a}, {label: b, when: {keyword: [x]}}]", "rule 2: unknown condition"),
    ("rules: [{label: a, when: {head: {intent: pay}}}]", "rule 1: head.intent needs"),
    ("rules: [{label: a, confidence: 3}]", "rule 1: confidence 3.0 outside"),
    ("fallback: guess", "fallback 'guess'"),
    ("rules: [{label: a, when: {order: x}}]", "rule 1: order must be a list"),
])
def test_bad_rule_files_name_the_rule(tmp_path, text, message):
    (tmp_path / "r.yaml").write_text(text)
    with pytest.raises(RuleError, match=message):
        RuleSet.load(tmp_path / "r.yaml")


def test_prelabel_cli(tmp_path):
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(2, 8)) * 5
    (tmp_path / "pooled").mkdir()
    lines = ["key\tframes\tpooled\tseconds\tshape"]
    for i in range(20):
        np.save(tmp_path / "pooled" / f"c{i}.npy", centres[i % 2] + rng.normal(size=8))
        lines.append(f"c{i}\tframes/c{i}.npy\tpooled/c{i}.npy\t3.0\t30x8")
    (tmp_path / "index.tsv").write_text("\n".join(lines) + "\n")
    (tmp_path / "labeled.list").write_text("".join(
        json.dumps({"key": f"c{i}", "wav": "x.wav", "intent": ["pay", "lock"][i % 2]}) + "\n"
        for i in range(4)))
    (tmp_path / "text").write_text("c5 tôi sẽ thanh toán\nc6 khóa thẻ giúp tôi\n")
    (tmp_path / "r.yaml").write_text("rules:\n  - label: promise\n    when: "
                                     "{keywords_any: [thanh toán]}\n")
    out = tmp_path / "pre.csv"
    r = subprocess.run([sys.executable, "-m", "chunkformer.bin.prelabel", "--index",
                        str(tmp_path / "index.tsv"), "--k", "2", "--labeled",
                        str(tmp_path / "labeled.list"), "--label_field", "intent",
                        "--transcripts", str(tmp_path / "text"), "--rules",
                        str(tmp_path / "r.yaml"), "--output", str(out)],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    rows = {row["key"]: row for row in csv.DictReader(open(out, encoding="utf-8"))}
    assert len(rows) == 20
    assert rows["c5"]["proposed_label"] == "promise" and "thanh toán" in rows["c5"]["reason"]
    assert rows["c7"]["proposed_label"] == "lock"  # its cluster's labeled calls say "lock"
    assert rows["c8"]["proposed_label"] == "pay"
    assert float(rows["c8"]["cluster_confidence"]) > 0.5
    assert rows["c8"]["nearest_labeled"].split(";")[0].split(":")[1] == "pay"
    assert rows["c0"]["cluster"] == rows["c2"]["cluster"] != rows["c1"]["cluster"]
