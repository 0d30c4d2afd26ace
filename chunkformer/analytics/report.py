"""Explainable call report: one static HTML page (no network, no scripts needed) that shows,
per call, the waveform with speaker turns, the transcript with word timings, intent and
sentiment over time as a heatmap along the call, the predicted outcome, and why: the segments
that weighed most in the outcome, highlighted on the waveform and linked to their words.

Analysis of a call (:func:`analyse_call`):
* transcript: the ASR model's greedy CTC decoding with word times, split into segments at
  silences (``Transcript.segments``); with the call's known turns, each turn decoded alone;
* speaker turns: the known turns' roles, else one embedding per segment (the speaker head's,
  else the mean encoder frame), clustered into ``num_speakers`` groups (average linkage,
  cosine);
* timeline: every timeline head (utterance classifiers such as intent, emotion) run on
  sliding windows of encoder frames → class probabilities per window;
* outcome: with the call's speaker turns and a turn-outcome layer
  (:mod:`.turn_outcome`), the utterance heads score every turn and the layer decides; each
  turn's weight is its share of the decision, spread over the segments it holds, and the
  reasons name the turn and the score ("customer turn 2 (5.1-9.8 s): emotion angry 0.93").
  Otherwise the outcome head on the whole call; the weight of each segment is its share of the
  attention-pooling weights (attentive pooling), or, for mean pooling, the drop of the
  predicted class's probability when the segment's frames are left out (occlusion).
"""
import html
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np
import torch

from chunkformer.analytics.cluster import agglomerative
from chunkformer.analytics.turn_outcome import NO_ROLE, Turn, TurnOutcome, describe
from chunkformer.data.audio import audio_channels, load_audio
from chunkformer.decoding.batch import decode_features
from chunkformer.heads.pooling import AttentiveStatsPooling

FRAME = 0.08  # seconds per encoder frame
COLOURS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b")


CHANNEL_ROLES = ("left", "right")  # the sides of a two-channel call


@dataclass
class Segment:
    start: float
    end: float
    words: List[dict]  # {"word", "start", "end"}
    speaker: int = 0
    weight: float = 0.0  # share in the outcome decision
    role: Optional[str] = None  # the known turn's role (bot, customer, ...)

    @property
    def text(self) -> str:
        return " ".join(w["word"] for w in self.words)


@dataclass
class CallAnalysis:
    key: str
    duration: float
    envelope: np.ndarray  # (columns, 2) min / max of the waveform per column
    segments: List[Segment]
    timeline: Dict[str, dict] = field(default_factory=dict)  # head → {classes, times, probs}
    outcome: Optional[dict] = None  # {head, label, probability, classes, probs, method,
    #                                   reasons (turn outcome only)}


def envelope(wave: np.ndarray, columns: int = 800) -> np.ndarray:
    """Min and max of the samples in ``columns`` equal slices, scaled to [-1, 1]."""
    wave = np.asarray(wave, dtype=np.float32)
    peak = max(float(np.abs(wave).max()) if wave.size else 0.0, 1e-9)
    edges = np.linspace(0, len(wave), columns + 1).astype(int)
    out = np.zeros((columns, 2), dtype=np.float32)
    for i in range(columns):
        piece = wave[edges[i]:max(edges[i + 1], edges[i] + 1)]
        if piece.size:
            out[i] = piece.min() / peak, piece.max() / peak
    return out


def _frames_of(segment: Segment, total: int) -> slice:
    """The encoder frames of a segment (at least one, within the call's ``total``)."""
    first = min(int(segment.start / FRAME), total - 1)
    return slice(first, max(first + 1, min(int(segment.end / FRAME) + 1, total)))


@torch.no_grad()
def transcribe(asr_model, task_model, audio, turns: Optional[Sequence[dict]] = None,
               max_silence: float = 0.5) -> List[Segment]:
    """The call's transcript as segments split at silences, in time order: each known turn
    decoded on its own (word times shifted to the call's clock; a model that never heard a turn
    change inside one utterance does better on one speaker at a time), else each channel of a
    two-channel recording on its own (role ``left`` / ``right``: a side of the call), else the
    whole call at once."""
    channels = audio_channels(audio) if isinstance(audio, (str, Path)) and not turns else 1
    if turns:
        pieces = [(t["start"], t["end"], t.get("role"), None) for t in turns]
    elif channels > 1:
        names = CHANNEL_ROLES if channels == 2 else [f"ch{c}" for c in range(channels)]
        pieces = [(None, None, names[c], c) for c in range(channels)]
    else:
        pieces = [(None, None, None, None)]
    segments = []
    for start, end, role, channel in pieces:
        feats = task_model.features(audio, start=start, end=end, channel=channel)
        transcript = decode_features(asr_model, [feats.to(asr_model.device)], 0, 0, 0)[0]
        shift = start or 0.0
        for seg in transcript.segments(max_silence):
            words = [{**w, "start": round(w["start"] + shift, 3),
                      "end": round(w["end"] + shift, 3)} for w in seg["words"]]
            if words:
                segments.append(Segment(words[0]["start"], words[-1]["end"], words,
                                        speaker=channel or 0, role=role))
    return sorted(segments, key=lambda s: s.start)


@torch.no_grad()
def score_turns(task_model, audio, turns: Sequence[dict], heads: Sequence[str]) -> List[Turn]:
    """Each turn (``start``, ``end``, ``role``) of the call scored by the classifier ``heads``
    on its own audio, as ``evaluate_heads`` scores segment rows."""
    out = []
    for i, t in enumerate(turns):
        probs = task_model.outputs(audio, t["start"], t["end"])
        scores = {name: {c: float(p) for c, p in zip(task_model.heads[name].classes,
                                                     probs[name])} for name in heads}
        out.append(Turn(f"turn{i}", float(t["start"]), float(t["end"]),
                        str(t.get("role") or NO_ROLE), scores))
    return out


def _turn_outcome(analysis: CallAnalysis, turns: List[Turn], layer: TurnOutcome, top: int):
    """The layer's outcome, each turn's weight spread over its segments (by overlap), and the
    reasons."""
    decision = layer.decide(turns, top)
    shares = [0.0] * len(analysis.segments)
    for t, w in zip(turns, decision["weights"]):
        overlap = [max(0.0, min(s.end, t.end) - max(s.start, t.start))
                   for s in analysis.segments]
        total = sum(overlap)
        for i, o in enumerate(overlap):
            shares[i] += w * o / total if total > 0 else 0.0
    norm = sum(shares) or 1.0
    for s, w in zip(analysis.segments, shares):
        s.weight = w / norm
    analysis.outcome = {"head": "outcome", "label": decision["label"],
                        "probability": decision["probability"], "classes": layer.classes,
                        "probs": decision["probs"], "method": "turn scores",
                        "reasons": [describe(turns[j], j, f, v)
                                    for j, f, v, _ in decision["reasons"]]}


@torch.no_grad()
def analyse_call(key: str, audio, asr_model, task_model, outcome_head: Optional[str] = None,
                 timeline_heads: Sequence[str] = (), speaker_head: Optional[str] = None,
                 num_speakers: int = 2, window: float = 3.0, hop: float = 1.0,
                 max_silence: float = 0.5, turns: Optional[Sequence[dict]] = None,
                 turn_outcome: Optional[TurnOutcome] = None, top: int = 3) -> CallAnalysis:
    """Everything the report shows about one call (module docstring); full context.
    ``turns`` (``start``, ``end``, ``role``) with ``turn_outcome``: the outcome from the turn
    scores, else from ``outcome_head`` on the whole call."""
    feats = task_model.features(audio).to(task_model.device)
    wave = load_audio(audio).numpy()
    segments = transcribe(asr_model, task_model, audio, turns, max_silence)
    run = task_model.run(feats[None], torch.tensor([feats.size(0)]))
    total = int(run["lens"][0])
    analysis = CallAnalysis(key, len(wave) / 16000, envelope(wave), segments)

    def head_frames(name):
        return task_model.head_input(name, run["enc"], run["layers"])[0, :total]

    # speaker turns: the known turns' roles, the channels' sides (set by transcribe), else
    # clusters of segment embeddings
    if turns:
        roles = list(dict.fromkeys(str(t.get("role") or NO_ROLE) for t in turns))
        for s in segments:
            s.speaker = roles.index(str(s.role or NO_ROLE))
    elif len(segments) >= num_speakers > 1 and not any(s.role for s in segments):
        if speaker_head:
            head = task_model.heads[speaker_head]
            x = head_frames(speaker_head)
            pieces = [x[_frames_of(s, total)] for s in segments]
            emb = torch.stack([head.embed(piece[None], torch.tensor([len(piece)]))[0][0]
                               for piece in pieces])
        else:
            emb = torch.stack([run["enc"][0, _frames_of(s, total)].mean(0) for s in segments])
        for s, label in zip(segments, agglomerative(emb.float().cpu().numpy(), num_speakers)):
            s.speaker = int(label)
    # timeline heatmaps
    span, step = max(1, int(round(window / FRAME))), max(1, int(round(hop / FRAME)))
    starts = list(range(0, max(1, total - span + 1), step))
    for name in timeline_heads:
        head, x = task_model.heads[name], head_frames(name)
        windows = torch.stack([x[a:a + span] if a + span <= total
                               else torch.nn.functional.pad(x[a:], (0, 0, 0, a + span - total))
                               for a in starts])
        lens = torch.tensor([min(span, total - a) for a in starts])
        probs = torch.softmax(head(windows, lens)[0].float(), dim=-1)
        analysis.timeline[name] = {"classes": head.classes,
                                   "times": [a * FRAME for a in starts],
                                   "width": span * FRAME, "probs": probs.cpu().numpy()}
    # outcome and why
    if turns and turn_outcome is not None:
        heads = turn_outcome.heads
        missing = [h for h in heads if h not in task_model.heads]
        if missing:
            raise ValueError(f"the turn-outcome layer needs head(s) {missing}, which the task "
                             f"model lacks (heads: {', '.join(task_model.heads)})")
        _turn_outcome(analysis, score_turns(task_model, audio, turns, heads), turn_outcome, top)
    elif outcome_head:
        head, x = task_model.heads[outcome_head], head_frames(outcome_head)
        logits, weights = head(x[None], torch.tensor([total]))
        probs = torch.softmax(logits[0].float(), dim=-1)
        best = int(probs.argmax())
        if isinstance(head.pooling, AttentiveStatsPooling):
            method = "attention weights"
            shares = [float(weights[0, _frames_of(s, total)].sum()) for s in segments]
        else:
            method = "occlusion"
            shares = []
            for s in segments:
                keep = torch.ones(total, dtype=torch.bool)
                keep[_frames_of(s, total)] = False
                if not keep.any():
                    shares.append(float(probs[best]))
                    continue
                rest = torch.softmax(head(x[keep][None], torch.tensor([int(keep.sum())]))[0]
                                     [0].float(), dim=-1)
                shares.append(max(0.0, float(probs[best] - rest[best])))
        norm = sum(shares) or 1.0
        for s, w in zip(segments, shares):
            s.weight = w / norm
        analysis.outcome = {"head": outcome_head, "label": head.classes[best],
                            "probability": float(probs[best]), "classes": head.classes,
                            "probs": probs.cpu().numpy(), "method": method}
    return analysis


# ------------------------------------------------------------------------------- HTML
STYLE = """
body{font-family:sans-serif;margin:24px;color:#222;max-width:1200px}
h1{font-size:22px} h2{font-size:18px;margin-top:32px;border-top:1px solid #ccc;padding-top:12px}
.meta{color:#555} .outcome{font-size:16px;margin:8px 0}
.bar{display:inline-block;height:12px;background:#2a7;vertical-align:middle}
.seg{margin:4px 0} .seg .who{display:inline-block;width:90px;font-weight:bold}
.seg .t{color:#777;font-size:12px;display:inline-block;width:110px}
.w{padding:0 1px} .why .w{background:#ffe08a}
table.calls td,table.calls th{padding:2px 10px;text-align:left}
ol.reasons li{margin:3px 0}
"""


LABEL_W, WIDTH = 170, 1000  # the waveform and the heatmap share one time axis


def _svg_waveform(a: CallAnalysis, height: int = 120) -> str:
    plot = WIDTH - LABEL_W - 20
    cols = len(a.envelope)
    sx, mid = plot / max(cols, 1), height / 2

    def x_of(t):
        return LABEL_W + t / a.duration * plot if a.duration else LABEL_W

    parts = [f'<svg class="waveform" width="{WIDTH}" height="{height + 18}">',
             f'<text x="2" y="{mid:.0f}" font-size="11">waveform, speaker turns</text>',
             f'<text x="2" y="{height - 1}" font-size="11" fill="#d62728">outcome weight</text>']
    for s in a.segments:  # speaker turns behind the wave
        parts.append(f'<rect class="turn" x="{x_of(s.start):.1f}" y="0" '
                     f'width="{max(x_of(s.end) - x_of(s.start), 1):.1f}" height="{height}" '
                     f'fill="{COLOURS[s.speaker % len(COLOURS)]}" fill-opacity="0.15"/>')
    for i, s in enumerate(a.segments):  # the outcome's weight, as a band under the wave
        if s.weight > 0:
            parts.append(f'<a href="#{_seg_id(a, i)}"><rect class="weight" '
                         f'x="{x_of(s.start):.1f}" y="{height - 8}" '
                         f'width="{max(x_of(s.end) - x_of(s.start), 1):.1f}" height="8" '
                         f'fill="#d62728" fill-opacity="{min(1.0, 0.2 + s.weight):.2f}">'
                         f'<title>weight {s.weight:.0%}</title></rect></a>')
    path = " ".join(f"M{LABEL_W + i * sx:.1f},{mid - hi * mid * 0.9:.1f}"
                    f"V{mid - lo * mid * 0.9:.1f}" for i, (lo, hi) in enumerate(a.envelope))
    parts.append(f'<path class="wave" d="{path}" stroke="#333" stroke-width="1"/>')
    step = max(1, int(a.duration // 10))
    for t in range(0, int(a.duration) + 1, step):
        parts.append(f'<text x="{x_of(t):.1f}" y="{height + 14}" font-size="11">{t}s</text>')
    parts.append("</svg>")
    return "".join(parts)


def _cells(times: Sequence[float], width: float, duration: float) -> List[tuple]:
    """Where each window's cell is drawn: around the window's centre, up to the midpoints
    between neighbouring centres, the first from 0 and the last to the end of the call, so
    that the cells tile the time axis."""
    centres = [t + width / 2 for t in times]
    edges = [0.0] + [(a + b) / 2 for a, b in zip(centres, centres[1:])] + [duration]
    return list(zip(edges[:-1], edges[1:]))


def _svg_heatmap(a: CallAnalysis, row: int = 16) -> str:
    rows = [(name, i, c) for name, t in a.timeline.items() for i, c in enumerate(t["classes"])]
    if not rows:
        return ""
    label_w, plot_w = LABEL_W, WIDTH - LABEL_W - 20
    parts = [f'<svg class="heatmap" width="{WIDTH}" height="{row * len(rows) + 4}">']
    for r, (name, i, cls) in enumerate(rows):
        t = a.timeline[name]
        colour = COLOURS[list(a.timeline).index(name) % len(COLOURS)]
        parts.append(f'<text x="2" y="{r * row + 12}" font-size="11">'
                     f'{html.escape(name)}: {html.escape(cls)}</text>')
        for start, (left, right), p in zip(t["times"], _cells(t["times"], t["width"],
                                                               a.duration), t["probs"][:, i]):
            x = label_w + left / a.duration * plot_w
            w = max(1.0, (right - left) / a.duration * plot_w)
            parts.append(f'<rect class="cell" x="{x:.1f}" y="{r * row}" width="{w:.1f}" '
                         f'height="{row - 2}" fill="{colour}" fill-opacity="{p:.3f}">'
                         f'<title>{html.escape(name)} {html.escape(cls)}, '
                         f'{start:.1f}-{start + t["width"]:.1f} s: {p:.2f}</title></rect>')
    parts.append("</svg>")
    return "".join(parts)


def _seg_id(a: CallAnalysis, i: int) -> str:
    return f"{_anchor(a.key)}-seg{i}"


def _anchor(key: str) -> str:
    return "call-" + "".join(c if c.isalnum() else "_" for c in key)


def _call_html(a: CallAnalysis, top: int) -> str:
    out = [f'<h2 id="{_anchor(a.key)}">{html.escape(a.key)}</h2>',
           f'<div class="meta">{a.duration:.1f} s, {len(a.segments)} segments, '
           f'{len({s.speaker for s in a.segments})} speaker(s)</div>']
    ranked = sorted(range(len(a.segments)), key=lambda i: -a.segments[i].weight)[:top]
    if a.outcome:
        o = a.outcome
        out.append(f'<div class="outcome">Predicted {html.escape(o["head"])}: '
                   f'<b class="label">{html.escape(o["label"])}</b> '
                   f'({o["probability"]:.0%}) <span class="bar" style="width:'
                   f'{int(200 * o["probability"])}px"></span></div>')
        if o.get("reasons"):
            out.append('<div>Why, the turn scores that pushed most towards it:</div>'
                       '<ol class="turn-reasons">' + "".join(
                           f"<li>{html.escape(r)}</li>" for r in o["reasons"]) + "</ol>")
        out.append(f'<div>Why ({html.escape(o["method"])}), the segments that weighed most:'
                   '</div><ol class="reasons">')
        for i in ranked:
            s = a.segments[i]
            out.append(f'<li><a href="#{_seg_id(a, i)}">{s.start:.1f}–{s.end:.1f} s</a> '
                       f'({s.weight:.0%}): “{html.escape(s.text)}”</li>')
        out.append("</ol>")
    out.append(_svg_waveform(a))
    out.append(_svg_heatmap(a))
    out.append('<div class="transcript">')
    for i, s in enumerate(a.segments):
        cls = "seg why" if a.outcome and i in ranked and s.weight > 0 else "seg"
        words = " ".join(f'<span class="w" data-start="{w["start"]:.2f}" '
                         f'data-end="{w["end"]:.2f}" title="{w["start"]:.2f}–{w["end"]:.2f} s">'
                         f'{html.escape(w["word"])}</span>' for w in s.words)
        who = html.escape(s.role) if s.role else f"speaker {chr(65 + s.speaker)}"
        out.append(f'<div class="{cls}" id="{_seg_id(a, i)}" data-speaker="{s.speaker}">'
                   f'<span class="who" style="color:{COLOURS[s.speaker % len(COLOURS)]}">'
                   f'{who}</span><span class="t">{s.start:.2f}–'
                   f'{s.end:.2f} s</span>{words}</div>')
    out.append("</div>")
    return "\n".join(out)


def _index_row(a: CallAnalysis) -> str:
    label = html.escape(a.outcome["label"]) if a.outcome else ""
    prob = f'{a.outcome["probability"]:.0%}' if a.outcome else ""
    return (f'<tr><td><a href="#{_anchor(a.key)}">{html.escape(a.key)}</a></td>'
            f'<td>{a.duration:.1f} s</td><td>{label}</td><td>{prob}</td></tr>')


def render_report(calls: List[CallAnalysis], title: str = "Call report", top: int = 3) -> str:
    """The whole page: an index of the calls, then each call."""
    rows = "".join(_index_row(a) for a in calls)
    body = "\n".join(_call_html(a, top) for a in calls)
    return (f'<!DOCTYPE html><html lang="vi"><head><meta charset="utf-8">'
            f'<title>{html.escape(title)}</title><style>{STYLE}</style></head><body>'
            f'<h1>{html.escape(title)}</h1><table class="calls"><tr><th>call</th>'
            f'<th>duration</th><th>outcome</th><th>probability</th></tr>{rows}</table>'
            f'{body}</body></html>')


def write_report(calls: List[CallAnalysis], path, title: str = "Call report") -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(render_report(calls, title), encoding="utf-8")
    tmp.replace(path)
    return path


