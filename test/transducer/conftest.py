"""The transducer reference vector (``test/fixtures/reference-rnnt-small``, README there); its
audio is the CTC vector's (``reference-small/wavs``, the same samples as FLAC)."""
import json
from pathlib import Path

import numpy as np
import pytest

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
RNNT_DIR = FIXTURES / "reference-rnnt-small"


@pytest.fixture(scope="session")
def rnnt_dir() -> Path:
    return RNNT_DIR


@pytest.fixture(scope="session")
def rnnt_meta() -> dict:
    return json.loads((RNNT_DIR / "meta.json").read_text(encoding="utf-8"))


@pytest.fixture(scope="session")
def rnnt_ref() -> dict:
    with np.load(RNNT_DIR / "reference.npz") as arrays:
        return dict(arrays)


@pytest.fixture(scope="session")
def rnnt_wav():
    """A wav named in meta.json → the shared FLAC file."""
    return lambda meta_path: FIXTURES / "reference-small" / "wavs" / (Path(meta_path).stem
                                                                       + ".flac")


@pytest.fixture(scope="session")
def rnnt_model():
    from chunkformer.model import ChunkFormerModel

    return ChunkFormerModel.from_pretrained(RNNT_DIR / "model")
