"""A YAML rule layer that turns clusters, head outputs and transcripts into a proposed label with
a confidence and a reason a person can read.

    rules:
      - label: promise_to_pay
        confidence: 0.9
        when:
          keywords_any: ["sẽ thanh toán", "trả trước"]   # one of them in the transcript
          keywords_none: ["không trả"]
          order: ["nhắc", "thanh toán"]                 # these words in this order
          head: {intent: {class: payment_reminder, min: 0.6}}
          intent_order: [verify_identity, payment_reminder]  # segment intents, in order
          cluster: [2, 5]
      - label: complaint
        when: {head: {emotion: {class: angry, min: 0.5}}}
    fallback: cluster        # no rule fired: the cluster's majority label (or: none)

Rules are tried in order; the first whose conditions all hold gives the label, its
``confidence`` (default 0.8) and a reason listing what matched. Keywords match whole words of
the normalised transcript (NFC, lower case, no punctuation). A rule file with an unknown key,
a rule without a label or a malformed condition stops with ``<file>: rule <n>: <problem>``.
"""
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence

import yaml

from chunkformer.data.text import normalize_text

CONDITIONS = ("keywords_any", "keywords_all", "keywords_none", "order", "head",
              "intent_order", "cluster", "cluster_label")
FALLBACKS = ("cluster", "none")


class RuleError(ValueError):
    """A malformed rule file; the message names the file and the rule."""


@dataclass
class Call:
    """What the rules see of one call."""

    key: str
    transcript: str = ""
    heads: Dict[str, tuple] = field(default_factory=dict)  # head → (class, probability)
    intents: Sequence[str] = ()  # the call's segment intents, in time order
    cluster: Optional[int] = None
    cluster_label: Optional[str] = None  # majority label of the cluster's labeled calls
    cluster_confidence: float = 0.0


@dataclass
class Proposal:
    label: Optional[str]
    confidence: float
    reason: str


def _find(words: List[str], phrase: str, start: int = 0) -> int:
    """Index of the first occurrence of ``phrase`` (words) at or after ``start``; -1 if none."""
    target = normalize_text(phrase).split()
    for i in range(start, len(words) - len(target) + 1):
        if words[i:i + len(target)] == target:
            return i
    return -1


def _in_order(sequence: List[str], items: Sequence[str], match) -> Optional[List[int]]:
    """Positions of ``items`` found one after another in ``sequence`` (greedy), or None."""
    found, at = [], 0
    for item in items:
        i = match(sequence, item, at)
        if i < 0:
            return None
        found.append(i)
        at = i + 1
    return found


def _seq_index(seq, item, start):
    return next((i for i in range(start, len(seq)) if seq[i] == item), -1)


class Rule:
    def __init__(self, spec: dict, where: str):
        if not isinstance(spec, dict) or not spec.get("label"):
            raise RuleError(f"{where}: a rule needs a label")
        unknown = set(spec) - {"label", "confidence", "when"}
        if unknown:
            raise RuleError(f"{where}: unknown key(s) {sorted(unknown)} (label, confidence, when)")
        self.label = str(spec["label"])
        self.confidence = float(spec.get("confidence", 0.8))
        if not 0.0 <= self.confidence <= 1.0:
            raise RuleError(f"{where}: confidence {self.confidence} outside [0, 1]")
        self.when = spec.get("when") or {}
        if not isinstance(self.when, dict):
            raise RuleError(f"{where}: 'when' must be a mapping of conditions")
        bad = set(self.when) - set(CONDITIONS)
        if bad:
            raise RuleError(f"{where}: unknown condition(s) {sorted(bad)} "
                            f"(known: {', '.join(CONDITIONS)})")
        for key in ("keywords_any", "keywords_all", "keywords_none", "order", "intent_order",
                    "cluster"):
            if key in self.when and not isinstance(self.when[key], list):
                raise RuleError(f"{where}: {key} must be a list")
        for head, cond in (self.when.get("head") or {}).items():
            if not isinstance(cond, dict) or "class" not in cond:
                raise RuleError(f"{where}: head.{head} needs {{class: <name>, min: <p>}}")

    def check(self, call: Call) -> Optional[List[str]]:
        """The reasons it holds (one per condition), or None when a condition fails."""
        words = normalize_text(call.transcript).split()
        why = []
        w = self.when
        if "keywords_any" in w:
            hits = [k for k in w["keywords_any"] if _find(words, k) >= 0]
            if not hits:
                return None
            why.append(f"says '{hits[0]}'")
        for k in w.get("keywords_all", []):
            if _find(words, k) < 0:
                return None
            why.append(f"says '{k}'")
        for k in w.get("keywords_none", []):
            if _find(words, k) >= 0:
                return None
        if w.get("keywords_none"):
            why.append(f"never says {', '.join(repr(k) for k in w['keywords_none'])}")
        if "order" in w:
            if _in_order(words, w["order"], _find) is None:
                return None
            why.append("says " + " … then ".join(f"'{k}'" for k in w["order"]))
        if "intent_order" in w:
            if _in_order(list(call.intents), w["intent_order"], _seq_index) is None:
                return None
            why.append("intent " + " before ".join(w["intent_order"]))
        for head, cond in (w.get("head") or {}).items():
            cls, p = call.heads.get(head, (None, 0.0))
            if cls != cond["class"] or p < float(cond.get("min", 0.0)):
                return None
            why.append(f"{head} head: {cls} ({p:.2f})")
        if "cluster" in w:
            if call.cluster not in w["cluster"]:
                return None
            why.append(f"in cluster {call.cluster}")
        if "cluster_label" in w:
            if call.cluster_label != w["cluster_label"]:
                return None
            why.append(f"cluster mostly '{call.cluster_label}'")
        return why


class RuleSet:
    def __init__(self, rules: List[Rule], fallback: str = "cluster"):
        self.rules, self.fallback = rules, fallback

    @classmethod
    def load(cls, path) -> "RuleSet":
        try:
            with open(path, encoding="utf-8") as f:
                spec = yaml.safe_load(f) or {}
        except yaml.YAMLError as e:
            raise RuleError(f"{path}: not valid YAML: {e}") from None
        if not isinstance(spec, dict):
            raise RuleError(f"{path}: expected a mapping with 'rules' (and 'fallback')")
        unknown = set(spec) - {"rules", "fallback"}
        if unknown:
            raise RuleError(f"{path}: unknown key(s) {sorted(unknown)} (rules, fallback)")
        fallback = spec.get("fallback", "cluster")
        if fallback not in FALLBACKS:
            raise RuleError(f"{path}: fallback {fallback!r} is not one of {FALLBACKS}")
        rules = [Rule(r, f"{path}: rule {i}") for i, r in enumerate(spec.get("rules") or [], 1)]
        return cls(rules, fallback)

    def propose(self, call: Call) -> Proposal:
        for rule in self.rules:
            why = rule.check(call)
            if why is not None:
                return Proposal(rule.label, rule.confidence,
                                f"rule '{rule.label}': " + "; ".join(why or ["always"]))
        if self.fallback == "cluster" and call.cluster_label is not None:
            return Proposal(call.cluster_label, round(call.cluster_confidence, 4),
                            f"no rule fired; cluster {call.cluster} is mostly "
                            f"'{call.cluster_label}' (confidence {call.cluster_confidence:.2f})")
        return Proposal(None, 0.0, "no rule fired and no labeled call in its cluster")
