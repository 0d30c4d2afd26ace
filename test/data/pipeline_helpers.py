"""Helpers of the data-pipeline tests: a syllable tokenizer, manifest rows over the espeak-ng
speech of ``conftest.vi_speech``, and rows whose audio or text is bad in each way the dataset
must skip."""
import numpy as np
import soundfile as sf

from chunkformer.data.manifest import Utterance

TEXTS = ("xin chào quý khách", "số tài khoản của tôi là một hai ba bốn",
         "tôi muốn kiểm tra số dư tài khoản", "cảm ơn anh đã gọi đến ngân hàng")


class SyllableTokenizer:
    """Vietnamese syllables (space-separated) of :data:`TEXTS` → ids 2.. (0 blank, 1 unk);
    ``encode`` reports the characters outside those syllables. (Characters would be too many
    tokens for the 8x subsampling at espeak-ng's speaking rate.)"""

    def __init__(self):
        words = sorted(set(" ".join(TEXTS).split()))
        self.ids = {w: i + 2 for i, w in enumerate(words)}
        self.chars = set("".join(words)) | {" "}

    def encode(self, text):
        ids = [self.ids.get(w, 1) for w in text.split()]
        return ids, [c for c in text if c not in self.chars]


def speech_rows(vi_speech, copies: int = 1):
    """Rows over the espeak-ng WAVs: each file whole and, from copies > 1 on, as segments."""
    rows = []
    for i, (path, text) in enumerate(vi_speech):
        duration = sf.info(str(path)).duration
        rows.append(Utterance(f"utt{i}", str(path), text, duration=duration))
        for c in range(1, copies):  # a segment: the first (0.5 + 0.1 c) of the file
            end = duration * (0.5 + 0.1 * c)
            rows.append(Utterance(f"utt{i}-{c}", str(path), text[: len(text) // 2], start=0.0,
                                  end=end, duration=end))
    return rows


def bad_rows(folder, speech_path):
    """One row per skip kind → (rows, {key: expected kind})."""
    rate = 16000
    wave, _ = sf.read(str(speech_path), dtype="int16")
    short, tiny = folder / "short.wav", folder / "tiny.wav"
    sf.write(str(short), wave[: int(0.2 * rate)], rate)  # 18 frames → 1 encoder frame
    sf.write(str(tiny), wave[: int(0.1 * rate)], rate)  # 8 frames: too short
    corrupt = folder / "corrupt.wav"
    corrupt.write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunk" + np.arange(200, dtype=np.uint8).tobytes())
    rows = [
        Utterance("missing", str(folder / "nowhere.wav"), "xin chào", duration=1.0),
        Utterance("corrupt", str(corrupt), "xin chào", duration=1.0),
        Utterance("empty", str(speech_path), "  ", duration=1.0),
        Utterance("unknown", str(speech_path), "xin chào €", duration=1.0),
        Utterance("tiny", str(tiny), "xin", duration=0.1),
        Utterance("long_text", str(short), "xin chào quý khách", duration=0.2),
    ]
    kinds = {"missing": "unreadable audio", "corrupt": "unreadable audio",
             "empty": "empty transcript", "unknown": "unknown characters", "tiny": "too short",
             "long_text": "transcript too long"}
    return rows, kinds
