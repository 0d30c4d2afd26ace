"""Hour-long audio: endless decoding from disk equals one chunked pass over the whole call."""
import numpy as np
import soundfile as sf
import torch

from chunkformer.data.audio import load_audio
from chunkformer.data.features import compute_fbank
from chunkformer.decoding.batch import decode_features
from chunkformer.decoding.endless import decode_long, segment_plan
from chunkformer.encoder.cmvn import GlobalCMVN
from chunkformer.model import ChunkFormerModel
from chunkformer.pretrained import build_modules


def tiny_model(vocab_size=40):
    cfg = {"output_dim": vocab_size, "input_dim": 80,
           "encoder_conf": {"output_size": 32, "attention_heads": 2, "linear_units": 64,
                            "num_blocks": 2, "cnn_module_kernel": 15}}
    torch.manual_seed(0)
    cmvn = GlobalCMVN(torch.full((80,), 10.0), torch.full((80,), 0.3))
    encoder, ctc, _, _ = build_modules(cfg, False, cmvn)
    with torch.no_grad():
        ctc.ctc_lo.bias[0] += 2.0  # mostly blank, like a trained model
    return ChunkFormerModel(encoder, ctc, None, None, cfg).eval()


def test_sixty_minute_call_at_8khz(vi_speech, tmp_path):
    speech = [sf.read(p, dtype="int16")[0][::2] for p, _ in vi_speech]  # crude 8 kHz copies
    gap = np.zeros(4000, dtype=np.int16)
    block = np.concatenate([np.concatenate([s, gap]) for s in speech])
    minutes = 60
    reps = int(np.ceil(minutes * 60 * 8000 / len(block)))
    call = np.tile(block, reps)[:minutes * 60 * 8000]
    path = tmp_path / "call_8k.wav"
    sf.write(path, call, 8000, subtype="PCM_16")
    model = tiny_model()
    total_frames = 1 + (minutes * 60 * 16000 - 400) // 160
    assert len(list(segment_plan(total_frames, 64, 128, 128, 2, 7, 300))) >= 10
    long = decode_long(model, path, 64, 128, 128, total_batch_duration=300)
    assert len(long.frame_ids) == 1 + (total_frames - 15) // 8
    whole = decode_features(model, [compute_fbank(load_audio(path))], 64, 128, 128)[0]
    assert long.frame_ids == whole.frame_ids
    assert long.ids == whole.ids and len(long.ids) > 50
    segs = long.segments(0.5)
    assert len(segs) > 10
    assert segs[-1]["end"].startswith("00:59:") or segs[-1]["end"].startswith("01:00:")
