"""Drop-in for upstream users: a script written the way the reference README writes it runs
unchanged against our package (import, Hub-cache repo id, keyword names, defaults)."""
import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

UPSTREAM_SCRIPT = textwrap.dedent('''
    import json, sys
    import torch
    from chunkformer import ChunkFormerModel

    device = "cpu"
    model = ChunkFormerModel.from_pretrained("khanhld/chunkformer-ctc-large-vie").to(device)
    x, x_len = model._load_audio_and_extract_features(sys.argv[1])  # x: (T, F), x_len: int
    x = x.unsqueeze(0).to(device)
    x_len = torch.tensor([x_len], device=device)
    feature, feature_len = model.encode(
        xs=x,
        xs_lens=x_len,
        chunk_size=64,
        left_context_size=128,
        right_context_size=128,
    )
    transcription = model.endless_decode(
        audio_path=sys.argv[2],
        chunk_size=64,
        left_context_size=128,
        right_context_size=128,
        total_batch_duration=11,  # in seconds
        return_timestamps=True
    )
    text = model.endless_decode(audio_path=sys.argv[2], total_batch_duration=11,
                                return_timestamps=False)
    transcriptions = model.batch_decode(
        audio_paths=sys.argv[1:3],
        chunk_size=64,
        left_context_size=128,
        right_context_size=128,
        total_batch_duration=1800  # Total batch duration in seconds
    )
    defaults = model.batch_decode(sys.argv[1:3])
    model.save_pretrained(sys.argv[3])
    again = ChunkFormerModel.from_pretrained(sys.argv[3])
    np_feature = feature[0, :int(feature_len[0])].detach().numpy()
    import numpy as np
    np.save(sys.argv[3] + "/feature.npy", np_feature)
    print(json.dumps({"segments": transcription, "text": text, "batch": transcriptions,
                      "defaults": defaults, "reloaded": again.batch_decode(sys.argv[1:3]),
                      "blank": model.char_dict[0]}, ensure_ascii=False))
''')


@pytest.fixture(scope="module")
def upstream_run(tmp_path_factory, reference_dir, ref_meta):
    """Run the script in a fresh interpreter, the model found through a Hugging Face cache."""
    home = tmp_path_factory.mktemp("hf_home")
    repo = home / "hub" / "models--khanhld--chunkformer-ctc-large-vie"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text("0123abcd\n")
    (repo / "snapshots").mkdir()
    (repo / "snapshots" / "0123abcd").symlink_to(reference_dir / "model")
    out = tmp_path_factory.mktemp("upstream") / "saved"
    script = out.parent / "upstream_example.py"
    script.write_text(UPSTREAM_SCRIPT)
    wavs = [reference_dir / ref_meta["wavs"][0], reference_dir / ref_meta["long_wav"]]
    env = dict(os.environ, HF_HOME=str(home), OMP_NUM_THREADS="1")
    env.pop("HF_HUB_CACHE", None)
    run = subprocess.run([sys.executable, str(script), *map(str, wavs), str(out)],
                         capture_output=True, text=True, env=env, cwd=out.parent)
    assert run.returncode == 0, run.stderr
    return json.loads(run.stdout.strip().splitlines()[-1]), out


def test_upstream_script_gives_reference_outputs(upstream_run, reference, ref_meta):
    result, out = upstream_run
    # encode() on one utterance at 64/128/128 is the reference's masked batch on it
    feature = np.load(out / "feature.npy")
    assert np.abs(feature - reference["mb_enc_0"]).max() <= 1e-4
    assert result["batch"][0] == ref_meta["batch_decode_text"][0]
    assert result["defaults"] == result["batch"] == result["reloaded"]
    spans = [(s["start"], s["end"]) for s in result["segments"]]
    assert spans == [(s["start"], s["end"]) for s in ref_meta["endless_segments"]]
    assert result["text"] == result["batch"][1]  # long-form == one masked batch on the file
    assert result["blank"] == "<blank>"


def test_repo_id_missing_from_cache_is_a_clear_error(tmp_path, monkeypatch):
    from chunkformer import ChunkFormerModel

    monkeypatch.setenv("HF_HOME", str(tmp_path))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    with pytest.raises(FileNotFoundError, match="huggingface-cli download"):
        ChunkFormerModel.from_pretrained("khanhld/chunkformer-ctc-large-vie")
    with pytest.raises(ValueError, match="never downloads"):
        ChunkFormerModel.from_pretrained("khanhld/x", force_download=True)
