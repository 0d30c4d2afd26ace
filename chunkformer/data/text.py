"""The one text normaliser, used for scoring (and for training targets).

Unicode NFC (Vietnamese diacritics have several code-point spellings: composed ``ộ`` vs ``ô`` +
combining dot below), lower case, punctuation removed, whitespace collapsed.
"""
import re
import unicodedata

_PUNCT = re.compile(r"[^\w\s']|_", re.UNICODE)
_SPACE = re.compile(r"\s+")


def normalize_text(text: str) -> str:
    text = unicodedata.normalize("NFC", text).lower()
    return _SPACE.sub(" ", _PUNCT.sub(" ", text)).strip()
