"""Stream a WAV file to a recognition server as a live call and print what comes back.

    python -m chunkformer.bin.stream_client --url ws://localhost:10086 --wav call.wav \
        [--channel 1] [--speed 1] [--piece_ms 100]

Partial results overwrite one line on stderr; each final result is printed on stdout with its
start and end time (``--json``: one JSON message per line, with its arrival time). ``--speed 2``
sends twice as fast as real time, ``0`` as fast as possible. A file at a rate the server does not
take is resampled to 16 kHz (``--sample_rate`` to choose). Needs the ``server`` extra.
"""
import argparse
import asyncio
import json
import sys

import numpy as np
import soundfile as sf

from chunkformer.bin.common import tool_main


def get_parser():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--url", default="ws://localhost:10086")
    p.add_argument("--wav", required=True, help="audio file (any format soundfile reads)")
    p.add_argument("--channel", type=int, default=None,
                   help="send this channel of a multi-channel file (default: their mean)")
    p.add_argument("--sample_rate", type=int, default=None,
                   help="resample to this rate before sending (default: the file's)")
    p.add_argument("--speed", type=float, default=1.0, help="× real time; 0: as fast as possible")
    p.add_argument("--piece_ms", type=int, default=100, help="audio per websocket message")
    p.add_argument("--single_utterance", action="store_true",
                   help="continuous_decoding false: the server stops at the first endpoint")
    p.add_argument("--json", action="store_true", help="print every message as JSON")
    return p


def read_pcm(path: str, channel, rate):
    """→ (int16 samples, sample rate) of one channel (or the mean), resampled if asked."""
    x, sr = sf.read(path, dtype="float32", always_2d=True)
    if channel is not None:
        if not 0 <= channel < x.shape[1]:
            raise ValueError(f"{path}: no channel {channel} (it has {x.shape[1]})")
        x = x[:, channel]
    else:
        x = x.mean(axis=1)
    if rate and rate != sr:
        import torch
        import torchaudio

        x = torchaudio.functional.resample(torch.from_numpy(x), sr, rate).numpy()
        sr = rate
    return np.clip(np.round(x * 32768), -32768, 32767).astype(np.int16), sr


@tool_main
def main(argv=None):
    args = get_parser().parse_args(argv)
    try:
        samples, rate = read_pcm(args.wav, args.channel, args.sample_rate)
    except (RuntimeError, ValueError) as e:  # soundfile's unreadable-file error, bad channel
        sys.exit(f"error: {e}")
    from chunkformer.serving.client import best, stream_audio

    def show(m):
        if args.json:
            print(json.dumps(m, ensure_ascii=False), flush=True)
        elif m.get("status") == "failed":
            print(f"\nserver: {m.get('message')}", file=sys.stderr)
        elif m.get("type") == "partial_result":
            print(f"\r… {best(m)['sentence']}"[-100:], end="", file=sys.stderr, flush=True)
        elif m.get("type") == "final_result":
            b = best(m)
            span = ""
            if b.get("word_pieces"):
                span = (f"[{b['word_pieces'][0]['start'] / 1000:.2f}-"
                        f"{b['word_pieces'][-1]['end'] / 1000:.2f}] ")
            print("\r", end="", file=sys.stderr)
            print(f"{span}{b['sentence']}", flush=True)

    try:
        messages = asyncio.run(stream_audio(args.url, samples, rate, args.piece_ms, args.speed,
                                            not args.single_utterance, on_message=show))
    except OSError as e:
        sys.exit(f"error: cannot reach {args.url}: {e}")
    except RuntimeError as e:
        sys.exit(f"error: {e}")
    if any(m.get("status") == "failed" for m in messages):
        sys.exit(1)


if __name__ == "__main__":
    main()
