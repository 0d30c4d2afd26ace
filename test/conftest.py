"""Shared test fixtures: real Vietnamese speech made at test time, sox format variants, and the
reference test vectors in ``test/fixtures/reference-small`` (see its README.md).

Nothing is downloaded: speech comes from espeak-ng, conversions from sox (both Debian packages
that the test command installs; a missing one fails the tests with the install command).
"""
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch

# (text, espeak-ng voice, words per minute): several voices and speeds.
VI_UTTERANCES = [
    ("xin chào quý khách", "vi", 150),
    ("số tài khoản của tôi là một hai ba bốn", "vi+f3", 175),
    ("tôi muốn kiểm tra số dư tài khoản", "vi-vn-x-south", 130),
    ("cảm ơn anh đã gọi đến ngân hàng", "vi-vn-x-central+m3", 160),
]


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} is required by the tests: apt-get install {name}", pytrace=False)
    return path


def _run(cmd, **kwargs) -> subprocess.CompletedProcess:
    result = subprocess.run(cmd, capture_output=True, **kwargs)
    if result.returncode != 0:
        pytest.fail(f"{' '.join(map(str, cmd))} failed: {result.stderr.decode()}", pytrace=False)
    return result


def sox_convert(src, dst, rate=None, channels=None, bits=None, encoding=None) -> Path:
    """Write ``src`` to ``dst`` with sox (format from the extension); no dither, repeatable.

    ``encoding`` is sox's ``-e`` (``signed-integer``, ``floating-point``, ...).
    """
    options = []
    for flag, value in (("-r", rate), ("-c", channels), ("-b", bits), ("-e", encoding)):
        if value is not None:
            options += [flag, str(value)]
    _run([_tool("sox"), "-D", str(src), *options, str(dst)])
    return Path(dst)


@pytest.fixture(scope="session")
def sox():
    """The :func:`sox_convert` helper: ``sox(src, dst, rate=8000, channels=2, bits=24, ...)``."""
    return sox_convert


@pytest.fixture(scope="session")
def vi_speech(tmp_path_factory) -> list:
    """A few Vietnamese utterances synthesised by espeak-ng → [(16 kHz int16 WAV path, text)]."""
    espeak, folder = _tool("espeak-ng"), tmp_path_factory.mktemp("vi_speech")
    speech = []
    for i, (text, voice, speed) in enumerate(VI_UTTERANCES):
        raw = folder / f"utt{i}_22k.wav"
        _run([espeak, "-v", voice, "-s", str(speed), "-w", str(raw), text])
        speech.append((sox_convert(raw, folder / f"utt{i}.wav", rate=16000, bits=16), text))
    return speech


@pytest.fixture
def one_thread():
    """torch on one thread for the test (small ops: thread start-up would dominate)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


FIXTURES = Path(__file__).resolve().parent / "fixtures"


@pytest.fixture(scope="session")
def reference_dir() -> Path:
    """``test/fixtures/reference-small``: the reference code's outputs on a small random model
    (its README.md says what each array is and how the folder differs from the original)."""
    return FIXTURES / "reference-small"


@pytest.fixture(scope="session")
def real_recording() -> Path:
    """A real Vietnamese recording (Common Voice, CC0, 7.1 s, 16 kHz; ``fixtures/real``)."""
    return FIXTURES / "real" / "common_voice_vi_23397238.wav"


@pytest.fixture(scope="session")
def default_model() -> Path:
    """A model that recognises the synthetic corpus: the default recipe's averaged model
    (small, 4 x 96, released layout; how it was made: ``fixtures/default-model/README.md``)."""
    return FIXTURES / "default-model"


@pytest.fixture(scope="session")
def reference(reference_dir, ref_meta) -> dict:
    """The arrays of ``reference.npz`` (documented in the folder's README.md), plus
    ``wave16k_0`` / ``wave16k_1``: the two 16 kHz inputs' own samples, which the reference
    handed to the fbank unchanged (left out of the npz: they are the files)."""
    import soundfile as sf

    with np.load(reference_dir / "reference.npz") as arrays:
        out = dict(arrays)
    for i in (0, 1):
        out[f"wave16k_{i}"] = sf.read(reference_dir / ref_meta["wavs"][i], dtype="int16")[0]
    return out


@pytest.fixture(scope="session")
def ref_model_dir(reference_dir) -> Path:
    """The reference test vector's model folder (released layout, small random model)."""
    return reference_dir / "model"


@pytest.fixture(scope="session")
def ref_meta(reference_dir) -> dict:
    """``meta.json``: the reference's texts and long-form segments."""
    import json

    return json.loads((reference_dir / "meta.json").read_text(encoding="utf-8"))


@pytest.fixture(scope="session")
def ref_model(ref_model_dir):
    """The reference-small model loaded by our loader, eval mode, float32 on the CPU."""
    from chunkformer.model import ChunkFormerModel

    return ChunkFormerModel.from_pretrained(ref_model_dir)
