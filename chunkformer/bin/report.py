"""Turn one or many calls into a static HTML page that opens offline: waveform with speaker
turns, transcript with word timings, intent / sentiment over time as a heatmap, the predicted
outcome and the segments that weighed most in it, linked to their words.

    python -m chunkformer.bin.report --model_dir exp/heads/final --asr_dir exp/default/final \
        --data calls.list --output exp/report/index.html --outcome_head outcome

``--model_dir`` is a task model folder (``model: multitask``); ``--asr_dir`` an ASR model
folder for the transcript (default: the task model, when it has a CTC head). By default the
outcome head is the one named ``outcome``, the speaker head the first speaker head, and every
other classifier head is drawn along the call. With ``--turn_outcome`` (a layer written by
``call_outcome fit``), calls whose row lists its ``turns`` (``start``, ``end``, ``role``) get
their outcome from the heads' turn scores instead, with the turns and scores that decided it.
"""
import argparse
import sys

from tqdm import tqdm

from chunkformer.analytics.report import analyse_call, write_report
from chunkformer.analytics.turn_outcome import TurnOutcome
from chunkformer.bin.common import tool_main, user_error_message
from chunkformer.data.audio import AudioError
from chunkformer.data.manifest import read_manifest
from chunkformer.data.numbers import inverse_numbers_timed
from chunkformer.folders import load_model_folder, load_task_model_or_exit
from chunkformer.heads.classifier import SpeakerEmbeddingHead


def get_parser():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--model_dir", required=True, help="task model folder (heads)")
    p.add_argument("--asr_dir", default=None, help="ASR model folder (default: --model_dir)")
    p.add_argument("--data", required=True, help="list of calls (any supported format)")
    p.add_argument("--output", required=True, help="HTML file to write")
    p.add_argument("--outcome_head", default="outcome")
    p.add_argument("--turn_outcome", default=None,
                   help="call_outcome's layer (JSON): the outcome from the rows' turns")
    p.add_argument("--speaker_head", default=None, help="default: the first speaker head")
    p.add_argument("--timeline_heads", default=None,
                   help="comma-separated; default: every other classifier head")
    p.add_argument("--num_speakers", type=int, default=2)
    p.add_argument("--window", type=float, default=3.0, help="heatmap window, seconds")
    p.add_argument("--hop", type=float, default=1.0, help="heatmap hop, seconds")
    p.add_argument("--title", default="Call report")
    p.add_argument("--inverse_numbers", action="store_true",
                   help="show spoken numbers as digits (\"năm trăm nghìn đồng\" → "
                        "\"500.000 đồng\"), each one timed word")
    return p


def _valid_turns(turns) -> bool:
    """A list of mappings, each with numeric ``start`` < ``end``."""
    return isinstance(turns, list) and bool(turns) and all(
        isinstance(t, dict) and isinstance(t.get("start"), (int, float))
        and isinstance(t.get("end"), (int, float)) and t["start"] < t["end"] for t in turns)


@tool_main
def main(argv=None):
    args = get_parser().parse_args(argv)
    rows = read_manifest(args.data)
    task = load_task_model_or_exit(args.model_dir)
    asr = load_model_folder(args.asr_dir) if args.asr_dir else task
    if getattr(asr, "ctc", None) is None:
        sys.exit("error: no CTC head for the transcript: give --asr_dir <ASR model folder>")
    speakers = [n for n, h in task.heads.items() if isinstance(h, SpeakerEmbeddingHead)]
    speaker = args.speaker_head or (speakers[0] if speakers else None)
    outcome = args.outcome_head if args.outcome_head in task.heads else None
    timeline = (args.timeline_heads.split(",") if args.timeline_heads else
                [n for n in task.heads if n not in speakers and n != outcome])
    unknown = [n for n in timeline + [speaker] if n and n not in task.heads]
    if unknown:
        sys.exit(f"error: no head named {unknown[0]!r} (heads: {', '.join(task.heads)})")
    try:
        layer = TurnOutcome.load(args.turn_outcome) if args.turn_outcome else None
    except (ValueError, OSError) as e:
        sys.exit(f"error: {user_error_message(e)}")
    calls, bad, whole = [], [], 0
    for row in tqdm(rows, unit="call"):
        turns = row.labels.get("turns") if layer is not None else None
        if layer is not None and not _valid_turns(turns):
            whole += 1
            turns = None
        try:
            calls.append(analyse_call(row.key, row.audio, asr, task, outcome, timeline, speaker,
                                      args.num_speakers, args.window, args.hop, turns=turns,
                                      turn_outcome=layer))
        except AudioError as e:
            bad.append(f"{row.key}: {e}")
        except ValueError as e:
            sys.exit(f"error: {e}")
    if whole:
        print(f"{whole} call(s) without a valid 'turns' list: outcome from the whole call",
              file=sys.stderr)
    if not calls:
        sys.exit("error: no call could be read: " + "; ".join(bad[:3]))
    if args.inverse_numbers:
        for call in calls:
            for segment in call.segments:
                segment.words = inverse_numbers_timed(segment.words)
    path = write_report(calls, args.output, args.title)
    for line in bad:
        print(f"skipped {line}", file=sys.stderr)
    print(f"{len(calls)} call(s) → {path} (open it in a browser; it needs no network)")


if __name__ == "__main__":
    main()
