"""Random Vietnamese syllables, spelled by the orthography's rules, for pronunciation drills.

A corpus built from a few hundred sentence templates speaks a few hundred distinct syllables: a
model trained on it learns those syllables as whole units and cannot spell one it never heard
(the default recipe recognised 3% of its test words that were absent from training). Written
Vietnamese is close to phonemic (onset + rhyme + tone), so syllables drawn from the whole
onset × rhyme × tone inventory, read out by espeak-ng's letter-to-sound rules, teach the
mapping from sound to spelling itself. Some drawn syllables are rare or not words at all; what
matters is that each is spelled as Vietnamese spells its sound.

Spelling rules applied:
* /k/ is ``k`` before i, e, ê and ``c`` elsewhere; /ɣ/ and /ŋ/ take an ``h`` there (gh, ngh);
  /kw/ is ``qu`` and never takes a rhyme that starts with the o/u glide.
* Rhymes ending in p, t, c, ch take only the sắc or nặng tone.
* ``iê`` is written ``yê`` with no onset; ``gi`` writes one i before a rhyme that is i plus a
  final (gì, gìn) and takes no other i-rhyme.
* The tone mark sits where the corpus's texts put it (the older placement: ``khóa``, ``thủy``):
  on the vowel with a shape diacritic (ă â ê ô ơ ư; ơ in ươ), otherwise on the last vowel of a
  closed rhyme, the middle vowel of three, and the first of two.
"""
import random
import unicodedata
from typing import Tuple

# written onsets; "k" stands for /k/ (c/k), "g" for /ɣ/ (g/gh), "ng" for /ŋ/ (ng/ngh)
ONSETS = ("", "b", "k", "ch", "d", "đ", "g", "gi", "h", "kh", "l", "m", "n", "ng", "nh", "ph",
          "qu", "r", "s", "t", "th", "tr", "v", "x")
OPEN_RHYMES = tuple("a e ê i o ô ơ u ư ai ao au ay âu ây eo êu ia iu oi ôi ơi ua ui uôi ưa ưi ưu "
                    "ươi ươu iêu oa oai oay oe uy uê".split())
CODAS = {  # nucleus → the finals it takes
    "a": "m n ng nh p t c ch", "ă": "m n ng p t c", "â": "m n ng p t c", "e": "m n p t",
    "ê": "m n nh p t ch", "i": "m n nh p t ch", "o": "m n ng p t c", "ô": "m n ng p t c",
    "ơ": "m n p t", "u": "m n ng p t c", "ư": "ng t c", "iê": "m n ng p t c",
    "uô": "m n ng t c", "ươ": "m n ng p t c", "oa": "n ng nh t c ch", "oă": "n ng t c",
    "uyê": "n t", "uâ": "n t", "oe": "n t", "uy": "nh t ch",
}
CLOSED_RHYMES = tuple(n + c for n, codas in CODAS.items() for c in codas.split())
GLIDE_STARTS = ("oa", "oă", "oe", "uy", "uâ", "uê")  # rhymes that begin with the o/u glide
NO_GLIDE_ONSETS = ("b", "m", "ph", "v", "qu", "gi", "r", "g", "nh", "k")
CHECKED_CODAS = ("p", "t", "c", "ch")
VOWELS = "aăâeêioôơuưy"
SHAPED = "ăâêôơư"
TONES = ("", "\u0300", "\u0301", "\u0309", "\u0303", "\u0323")  # ngang huyền sắc hỏi ngã nặng
CHECKED_TONES = ("\u0301", "\u0323")


def _front(rhyme: str) -> bool:
    return rhyme[0] in "ieê"


def spell_onset(onset: str, rhyme: str) -> str:
    """The written onset before this (written) rhyme: c/k, g/gh, ng/ngh; ``gi`` drops its i
    before a rhyme that starts with i."""
    if onset == "k":
        return "k" if _front(rhyme) else "c"
    if onset in ("g", "ng"):
        return onset + "h" if _front(rhyme) else onset
    if onset == "gi" and rhyme[0] == "i":
        return "g"
    return onset


def tone_position(rhyme: str) -> int:
    """Index in ``rhyme`` of the vowel that carries the tone mark (older placement)."""
    vowels = [i for i, ch in enumerate(rhyme) if ch in VOWELS]
    if "ươ" in rhyme:
        return rhyme.index("ươ") + 1
    shaped = [i for i in vowels if rhyme[i] in SHAPED]
    if shaped:
        return shaped[-1]
    if vowels[-1] < len(rhyme) - 1 or len(vowels) == 1:  # closed rhyme, or a single vowel
        return vowels[-1]
    return vowels[1] if len(vowels) == 3 else vowels[0]


def spell(onset: str, rhyme: str, tone: str) -> str:
    """One syllable in NFC: onset (/k/ written ``k``) + untoned rhyme + tone mark."""
    written = "y" + rhyme[1:] if onset == "" and rhyme.startswith("iê") else rhyme
    if onset == "qu" and written.startswith("u"):
        raise ValueError(f"'qu' cannot take the rhyme '{rhyme}'")
    at = tone_position(written)
    toned = written[:at + 1] + tone + written[at + 1:]
    return unicodedata.normalize("NFC", spell_onset(onset, written) + toned)


def allowed(onset: str, rhyme: str) -> bool:
    """Onset-rhyme pairs the orthography writes (and espeak-ng reads as one syllable)."""
    glide = rhyme.startswith(GLIDE_STARTS)
    if glide and onset in NO_GLIDE_ONSETS:
        return False
    if onset == "qu" and rhyme[0] in "ouưi":
        return False
    if onset == "gi" and rhyme[0] == "i" and any(ch in VOWELS for ch in rhyme[1:]):
        return False  # its i is the onset's: gia, giêng are gi + a, iêng without an i
    return True


PAIRS: Tuple[Tuple[str, str], ...] = tuple(
    (o, r) for o in ONSETS for r in OPEN_RHYMES + CLOSED_RHYMES if allowed(o, r))


def random_syllable(rng: random.Random) -> str:
    """A syllable drawn uniformly over allowed onset-rhyme pairs, then over the tones that rhyme
    takes (checked rhymes: sắc or nặng only)."""
    onset, rhyme = rng.choice(PAIRS)
    return spell(onset, rhyme, rng.choice(CHECKED_TONES if rhyme.endswith(CHECKED_CODAS)
                                          else TONES))
