"""Two-channel calls: each side decoded on its own, then one time-ordered transcript.

A call recorded with the agent on one channel and the customer on the other is decoded channel
by channel (rows with ``channel`` 0, 1, …), so that speech on both sides at once (a barge-in)
is kept on both. :func:`merge_channels` interleaves the sides' silence-split segments by start
time; every segment and word carries its ``channel`` and, when roles are given, its ``role``.
"""
from typing import Dict, List, Optional, Sequence

from chunkformer.config import ConfigError
from chunkformer.decoding.transcript import Transcript


def parse_roles(text: Optional[str]) -> List[str]:
    """``agent,customer`` → ["agent", "customer"] (channel 0, 1, …); None → []."""
    if not text:
        return []
    roles = [r.strip() for r in text.split(",")]
    if any(not r for r in roles):
        raise ConfigError(f"--channel_roles {text!r}: expected names separated by commas")
    return roles


def merge_channels(sides: Dict[int, Transcript], max_silence_duration: float = 0.5,
                   roles: Sequence[str] = ()) -> dict:
    """{channel: its Transcript} → {"text", "words", "segments"} of the whole call, in time
    order (ties: lower channel first). Segments are ``Transcript.segments`` plus ``channel``
    (and ``role``); words get the same tags; the text joins the segments' texts."""
    def tag(item: dict, channel: int) -> dict:
        item = dict(item, channel=channel)
        if channel < len(roles):
            item["role"] = roles[channel]
        return item

    segments, words = [], []
    for channel, result in sorted(sides.items()):
        for seg in result.segments(max_silence_duration):
            seg = tag(seg, channel)
            seg["words"] = [tag(w, channel) for w in seg["words"]]
            segments.append(seg)
        words += [tag(w, channel) for w in result.words()]
    segments.sort(key=lambda s: (s["words"][0]["start"] if s["words"] else 0.0, s["channel"]))
    words.sort(key=lambda w: (w["start"], w["channel"]))
    text = " ".join(s["decode"] for s in segments if s["decode"])
    return {"text": text, "words": words, "segments": segments}
