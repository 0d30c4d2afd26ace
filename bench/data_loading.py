"""Data-loading throughput: audio seconds delivered per wall second by ``build_data(...)``.

    python bench/data_loading.py            # ~10 min of audio, 4 configurations, ~1-2 min
    python bench/data_loading.py --quick    # ~1 min of audio, a few seconds

A corpus of synthetic-speech WAVs (2-12 s, half at 8 kHz as call-center audio, so half is
resampled on load) goes through the training pipeline: load, [speed perturbation 0.9/1.0/1.1,
telephone channel with probability 0.5], fbank with dither, [SpecAugment], [long-form joins],
collate, with 0 and 2 DataLoader workers. Each run times the second epoch (the first warms the
workers up; they are persistent). Also timed on one thread: each waveform transform alone, in times real time. The
data-loading rate must stay well above the training step's audio seconds per second.
"""
import os
import time
from pathlib import Path

import common

NAME = "data_loading"


class SpeechTokenizer:
    """Any text → a few ids (the benchmark measures audio work, not tokenization)."""

    def encode(self, text):
        return [2, 3, 4], []


def make_corpus(work_dir, count: int, seed: int = 0):
    """``count`` WAVs of 2-12 s, every other one at 8 kHz → manifest rows."""
    import numpy as np
    import soundfile as sf
    from scipy.signal import resample_poly

    from chunkformer.data.manifest import Utterance

    clip, rng, rows = common.speech_clip(work_dir), np.random.default_rng(seed), []
    folder = Path(work_dir) / "data-loading"
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        seconds, rate = float(rng.uniform(2, 12)), 8000 if i % 2 else 16000
        path = folder / f"utt{i:04d}-{rate // 1000}k.wav"
        if not path.is_file():
            wave = common.tile(clip, int(seconds * common.SAMPLE_RATE), offset=i * 7919)
            if rate == 8000:
                wave = np.clip(resample_poly(wave, 1, 2), -32768, 32767).astype(np.int16)
            sf.write(str(path), wave, rate, subtype="PCM_16")
        rows.append(Utterance(f"utt{i:04d}", str(path), "xin chào",
                              duration=sf.info(str(path)).duration))
    return rows


AUGMENTED = {"speed_perturb": [0.9, 1.0, 1.1], "telephone": {"prob": 0.5}, "spec_augment": {}}
PLAIN = {"speed_perturb": None, "telephone": None, "spec_augment": None}
CONFIGURATIONS = [("none", PLAIN), ("speed + telephone + SpecAugment", AUGMENTED),
                  ("long-form: every example 20-60 s, joined with gaps",
                   {**PLAIN, "long_form": {"prob": 1.0, "seconds": [20, 60]}})]


def loading_rate(rows, settings: dict, workers: int) -> tuple:
    """(audio s / wall s, batches) of epoch 1 after a warm-up epoch 0."""
    from chunkformer.data.loader import build_data

    conf = {"num_workers": workers, "max_frames_in_batch": 6000, "fbank": {"dither": 1.0},
            **settings}
    data = build_data(rows, SpeechTokenizer(), conf, seed=0)
    for _ in data.batches(0):
        pass
    start, seconds, batches = time.perf_counter(), 0.0, 0
    for batch in data.batches(1):
        seconds += batch.audio_seconds
        batches += 1
    return seconds / (time.perf_counter() - start), batches


def transform_rates(repeats: int) -> list:
    """[(transform, × real time on one thread)] on a 10 s 16 kHz clip."""
    import torch

    from chunkformer.data.augment import SpecAugment, SpeedPerturb, TelephoneChannel
    from chunkformer.data.features import compute_fbank
    from chunkformer.data.long_form import LongFormConfig, join_features

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    wave, g = torch.randn(10 * common.SAMPLE_RATE) * 3000, torch.Generator().manual_seed(0)
    feats = compute_fbank(wave)
    cases = [("speed perturbation 0.9 / 1.1", lambda: SpeedPerturb((0.9, 1.1))(wave, g)),
             ("telephone channel (prob 1)", lambda: TelephoneChannel(prob=1.0)(wave, g)),
             ("fbank, dither 1.0", lambda: compute_fbank(wave, dither=1.0)),
             ("SpecAugment", lambda: SpecAugment()(feats, g)),
             ("long-form join (a 1 s gap between two 10 s parts)",
              lambda: join_features([feats, feats], [1.0], LongFormConfig(), g))]
    rates = []
    for name, run in cases:
        run()
        start = time.perf_counter()
        for _ in range(repeats):
            run()
        rates.append((name, 10.0 * repeats / (time.perf_counter() - start)))
    torch.set_num_threads(threads)
    return rates


def main():
    parser = common.base_parser(__doc__.splitlines()[0])
    parser.add_argument("--utterances", type=int, default=None, help="corpus size (default "
                        "80, --quick 10)")
    args = parser.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    rows = make_corpus(args.work_dir, args.utterances or (10 if args.quick else 80))
    total = sum(r.duration for r in rows)
    table = []
    for name, settings in CONFIGURATIONS:
        for workers in (0, 2):
            rate, batches = loading_rate(rows, settings, workers)
            table.append([name, workers, batches, f"{rate:.0f}",
                          f"{rate / max(1, workers):.0f}"])
    rates = transform_rates(3 if args.quick else 20)
    text = "\n\n".join([
        f"# Data loading throughput\n\n{common.environment_note(args)}",
        f"{len(rows)} utterances, {total / 60:.1f} min of audio (half 8 kHz, resampled on "
        "load); fbank dither 1.0; `max_frames_in_batch` 6000; epoch 1 timed after a warm-up "
        "epoch. Audio seconds per wall second (with workers, also per worker process):",
        common.markdown_table(["augmentation", "workers", "batches", "audio s / s",
                               "audio s / s per worker"], table),
        "Each transform alone on a 10 s clip, one thread (times real time):",
        common.markdown_table(["transform", "× real time"],
                              [[name, f"{rate:.0f}"] for name, rate in rates]),
    ])
    common.save_results(NAME + ("-quick" if args.quick else ""), text)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONWARNINGS", "ignore")
    main()
