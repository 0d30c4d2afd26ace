"""What the command-line tools share: one-line errors for user mistakes (:func:`tool_main`: a
bad list line, a missing file...) and the option that hashes or omits utterance ids in logs and
reports (call ids may carry phone numbers)."""
import argparse
import functools
import multiprocessing
import sys
from contextlib import nullcontext

import torch

from chunkformer.config import ConfigError
from chunkformer.data.audio import AudioError
from chunkformer.data.manifest import KEY_MODES, ManifestError

# What a user's input can raise: a bad config value, list line or audio file, a missing or
# unreadable path. Anything else is a bug and keeps its traceback.
USER_ERRORS = (ConfigError, ManifestError, AudioError, OSError)


def user_error_message(e: BaseException) -> str:
    """One line: ``<path>: <what is wrong>`` for OS errors, the exception's own text else."""
    if isinstance(e, OSError) and e.filename is not None and e.strerror:
        return f"{e.filename}: {e.strerror}"
    return str(e).splitlines()[0] if str(e) else type(e).__name__


def tool_main(main):
    """Decorate a tool's ``main(argv)``: a user mistake ends it with ``error: <message>`` and
    exit status 1, without a traceback."""
    @functools.wraps(main)
    def run(argv=None):
        try:
            return main(argv)
        except USER_ERRORS as e:
            sys.exit(f"error: {user_error_message(e)}")
    return run


def add_key_mode_option(parser: argparse.ArgumentParser, where: str) -> None:
    """``--key_mode plain|hash|omit``: how utterance ids and audio paths appear in ``where``."""
    parser.add_argument("--key_mode", default="plain", choices=KEY_MODES,
                        help=f"how utterance ids and audio paths appear in {where}: as they are, "
                             "hashed (16 hex digits of the SHA-256) or left out")


def worker_pool(num_workers: int):
    """A pool of ``num_workers`` processes with one torch thread each, or a null context for
    ``num_workers`` ≤ 1 (work in this process). Spawned: a forked child inherits the parent's
    OpenMP thread pool state and can hang."""
    if num_workers <= 1:
        return nullcontext()
    context = multiprocessing.get_context("spawn")
    return context.Pool(num_workers, initializer=torch.set_num_threads, initargs=(1,))
