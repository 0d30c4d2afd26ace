"""Numbers as Vietnamese speakers say them, for training targets (written → spoken).

Transcripts of bank calls write "1.200.000 đồng", "0912 345 678", "15/3/2024", "14h30",
"2,5%"; the released vocabulary spells numbers out, so such rows would otherwise be dropped
for unknown characters exactly where the bank cares most. :func:`verbalize_numbers` rewrites
every number in a text:

* amounts and counts: Vietnamese grouping (``1.200.000``; ``,`` is the decimal mark:
  ``2,5`` → "hai phẩy năm"; ``1.5``, a dot before one or two digits, is read as one too), read with trăm / nghìn (ngàn) / triệu / tỷ, "lẻ" (north) or
  "linh" (south) for a zero ten before a unit (105 → "một trăm lẻ năm"), "không trăm" for a
  zero hundred inside a larger number (1.005 → "một nghìn không trăm lẻ năm"), "mốt" for 1
  and "lăm" for 5 after a ten ("hai mươi mốt", "mười lăm"), "tư" (or "bốn") for 4 after
  tens from twenty ("hai mươi tư");
* currency signs and codes after (or before) an amount: đ / VND / vnđ → "đồng",
  $ / USD → "đô la", % → "phần trăm";
* digit strings read digit by digit: a number with a leading 0 (phones, "0912 345 678",
  groups joined by spaces, dots or dashes when the first starts with 0), or 7+ digits written
  without grouping (accounts, cards);
* dates ``d/m/yyyy``, ``d/m``, ``d-m-yyyy`` → "ngày … tháng … năm …" (month 4 → "tư"),
  times ``14:30``, ``14h30``, ``8h`` → "mười bốn giờ ba mươi phút";
* ordinals "thứ 1" → "thứ nhất", "thứ 4" → "thứ tư".

Options (``region``): ``north`` (nghìn, lẻ) or ``south`` (ngàn, linh); ``four`` after tens:
``tư`` or ``bốn``. The text is otherwise unchanged (normalisation of case and punctuation is
:func:`chunkformer.data.text.normalize_text`'s job, applied after).
"""
import re
from dataclasses import dataclass
from typing import List, Sequence, Tuple

from chunkformer.data.text import normalize_text

DIGITS = ["không", "một", "hai", "ba", "bốn", "năm", "sáu", "bảy", "tám", "chín"]


@dataclass(frozen=True)
class Style:
    """Regional choices: thousand word, word for a zero ten before a unit, 4 after tens."""

    thousand: str = "nghìn"
    zero_ten: str = "lẻ"
    four: str = "tư"

    @classmethod
    def of(cls, region: str = "north", four: str = "tư") -> "Style":
        if region not in ("north", "south"):
            raise ValueError(f"region must be north or south, got {region!r}")
        if four not in ("tư", "bốn"):
            raise ValueError(f"four must be 'tư' or 'bốn', got {four!r}")
        return cls("nghìn", "lẻ", four) if region == "north" else cls("ngàn", "linh", four)


def _below_thousand(n: int, style: Style, full: bool) -> List[str]:
    """0 < n < 1000 → words; ``full``: a group after a larger one, so a zero hundred is said
    ("không trăm") and a lone unit gets its "lẻ"."""
    hundreds, tens, units = n // 100, n // 10 % 10, n % 10
    words: List[str] = []
    if hundreds or full:
        words += [DIGITS[hundreds], "trăm"]
    if tens == 0:
        if units:
            if words:
                words.append(style.zero_ten)
            words.append(DIGITS[units])
        return words
    words += ["mười"] if tens == 1 else [DIGITS[tens], "mươi"]
    if units == 1 and tens >= 2:
        words.append("mốt")
    elif units == 5:
        words.append("lăm")
    elif units == 4 and tens >= 2:
        words.append(style.four)
    elif units:
        words.append(DIGITS[units])
    return words


def cardinal(n: int, style: Style = Style()) -> str:
    """A whole number ≥ 0 as it is said: 1200000 → "một triệu hai trăm nghìn"; above a tỷ
    the count of tỷ is itself a number (10^12 → "một nghìn tỷ")."""
    if n == 0:
        return "không"
    words: List[str] = []
    high, low = divmod(n, 10 ** 9)
    if high:
        words += cardinal(high, style).split() + ["tỷ"]
    for scale, name in ((10 ** 6, "triệu"), (10 ** 3, style.thousand), (1, "")):
        group = low // scale % 1000
        if group:
            words += _below_thousand(group, style, full=bool(words))
            if name:
                words.append(name)
    return " ".join(words)


def digit_by_digit(digits: str) -> str:
    return " ".join(DIGITS[int(d)] for d in digits if d.isdigit())


def decimal(integer: int, fraction: str, style: Style) -> str:
    """2,5 → "hai phẩy năm"; 1,05 → "một phẩy không năm" (the fraction digit by digit when it
    starts with 0, else as a number)."""
    tail = digit_by_digit(fraction) if fraction.startswith("0") else cardinal(int(fraction),
                                                                                style)
    return f"{cardinal(integer, style)} phẩy {tail}"


CURRENCY = {"đ": "đồng", "vnd": "đồng", "vnđ": "đồng", "đồng": "đồng", "usd": "đô la",
            "$": "đô la", "%": "phần trăm"}
_CUR = r"(?:vnđ|vnd|usd|đồng|đ|\$|%)"
_AMOUNT = r"\d{1,3}(?:\.\d{3})+(?:,\d+)?|\d+\.\d{1,2}(?![\d.])|\d+(?:,\d+)?"

_PATTERNS = [  # (name, regex), tried in this order at each position
    ("date", r"(?:\b(ngày)\s+)?(?<![\d/])(\d{1,2})[/-](\d{1,2})(?:[/-](\d{4}))?(?![\d/])"),
    ("time", r"(?<!\d)(\d{1,2})(?::(\d{2})|h(\d{2})?)(?![\d:])"),
    ("ordinal", r"\b(thứ)\s+(\d{1,2})(?!\d)"),
    ("phone", r"(?<![\d.,])0\d*(?:[ .\-]\d+)*(?![\d,])"),
    ("before", r"(?<![\w.,])(\$)\s?(" + _AMOUNT + r")(?![\d])"),
    ("amount", r"(?<![\d.,])(" + _AMOUNT + r")(?![\d])(?:\s?(" + _CUR + r")(?!\w))?"),
]
_TOKEN = re.compile("|".join(f"(?P<{name}>{rx})" for name, rx in _PATTERNS), re.IGNORECASE)
ORDINAL = {1: "nhất", 4: "tư"}


def _amount(text: str, style: Style) -> str:
    if re.fullmatch(r"\d+\.\d{1,2}", text):  # 1.5: a decimal point, not thousands
        text = text.replace(".", ",")
    whole, _, fraction = text.partition(",")
    digits = whole.replace(".", "")
    if "." not in whole and len(digits) >= 7 and not fraction:
        return digit_by_digit(digits)  # an account or card number, not an amount
    n = int(digits)
    return decimal(n, fraction, style) if fraction else cardinal(n, style)


def _spoken(match: re.Match, style: Style) -> str:
    kind = match.lastgroup
    if kind == "date":
        word, day, month, year = re.match(_PATTERNS[0][1], match.group(0),
                                          re.IGNORECASE).groups()
        if not (1 <= int(day) <= 31 and 1 <= int(month) <= 12):
            return match.group(0)
        said = f"{word or 'ngày'} {cardinal(int(day), style)} tháng " + \
            ("tư" if int(month) == 4 else cardinal(int(month), style))
        return said + (f" năm {cardinal(int(year), style)}" if year else "")
    if kind == "time":
        hour, minute_a, minute_b = re.match(_PATTERNS[1][1], match.group(0)).groups()
        minute = minute_a or minute_b
        if int(hour) > 24 or (minute and int(minute) > 59):
            return match.group(0)
        said = f"{cardinal(int(hour), style)} giờ"
        return said + (f" {cardinal(int(minute), style)} phút" if minute and int(minute)
                       else "")
    if kind == "ordinal":
        word, n = re.match(_PATTERNS[2][1], match.group(0), re.IGNORECASE).groups()
        n = int(n)
        return f"{word} {ORDINAL.get(n) or cardinal(n, style)}"
    if kind == "phone":
        return digit_by_digit(match.group(0))
    if kind == "before":
        _, amount = re.match(_PATTERNS[4][1], match.group(0)).groups()
        return f"{_amount(amount, style)} đô la"
    amount, unit = re.match(_PATTERNS[5][1], match.group(0), re.IGNORECASE).groups()
    said = _amount(amount, style)
    return said + (f" {CURRENCY[unit.lower()]}" if unit else "")


def verbalize_numbers(text: str, region: str = "north", four: str = "tư") -> str:
    """Every number in ``text`` as it is said (module docstring); other text unchanged."""
    style = Style.of(region, four)
    return _TOKEN.sub(lambda m: _spoken(m, style), text)


def has_digits(text: str) -> bool:
    return any(c.isdigit() for c in text)


# --------------------------------------------------------------------------- spoken → written
UNITS = {w: i for i, w in enumerate(DIGITS)}
UNITS.update({"mốt": 1, "tư": 4, "lăm": 5, "linh": 0, "lẻ": 0})
SCALES = {"nghìn": 10 ** 3, "ngàn": 10 ** 3, "triệu": 10 ** 6, "tỷ": 10 ** 9, "tỉ": 10 ** 9}
STRUCTURE = {"mười", "mươi", "trăm"} | set(SCALES)
AFTER_TENS_ONLY = {"mốt", "lăm"}  # units said this way only after a ten


def _parse_number(words: List[str], i: int, scales: bool = True):
    """The longest well-formed spoken number starting at ``words[i]`` → (value, next index,
    whether it had structure words), or None. Digit words follow each other only around a
    structure word (hai mươi mốt, một trăm lẻ năm), so "năm hai nghìn" reads as "năm" then a
    number."""
    total, current, j = 0, 0, i
    structured, prev = False, None  # prev: kind of the previous word
    while j < len(words):
        w = words[j]
        if w in ("lẻ", "linh"):
            if prev != "trăm" or j + 1 >= len(words) or words[j + 1] not in DIGITS[1:] + ["tư"]:
                break
            prev = "lẻ"
        elif w in UNITS and w not in ("lẻ", "linh"):
            if prev == "digit" or (w in AFTER_TENS_ONLY and prev not in ("mươi", "mười")) or \
                    (w == "tư" and prev != "mươi"):
                break
            current += UNITS[w]
            prev = "digit"
        elif w == "mười":
            if prev == "digit":
                break
            current += 10
            prev, structured = "mười", True
        elif w == "mươi":
            if prev != "digit" or current % 10 < 2:
                break
            current += (current % 10) * 9  # the digit before becomes tens
            prev, structured = "mươi", True
        elif w == "trăm":
            if prev != "digit":
                break
            current = current * 100  # a lone digit so far: the hundreds
            prev, structured = "trăm", True
        elif w in SCALES:
            if prev is None or prev == "lẻ" or not scales:
                break
            scale = SCALES[w]
            if scale == 10 ** 9 and total < 10 ** 9:  # một nghìn tỷ: the count of tỷ
                total = (total + current) * scale
            else:
                total += current * scale
            current, prev, structured = 0, "scale", True
        else:
            break
        j += 1
    if prev in (None, "lẻ"):
        return None
    return total + current, j, structured


def _grouped(n: int) -> str:
    return f"{n:,}".replace(",", ".")


def written_spans(words: Sequence[str]) -> List[Tuple[int, int, str]]:
    """Spoken words → [(first, stop, written)]: each output token and the words[first:stop]
    it stands for (a number written in digits, or one word as it was)."""
    out: List[Tuple[int, int, str]] = []
    i = 0
    while i < len(words):
        start, run = i, i
        while run < len(words) and words[run] in DIGITS:
            run += 1
        if run - i >= 3 and not any(w in STRUCTURE for w in words[run:run + 1]):
            out.append((start, run, "".join(str(UNITS[w]) for w in words[i:run])))
            i = run
            continue
        parsed = _parse_number(words, i)
        followed = parsed is not None and (list(words[parsed[1]:parsed[1] + 1]) == ["phẩy"] or
                                           list(words[parsed[1]:parsed[1] + 2]) == ["phần", "trăm"])
        if parsed is None or not (parsed[2] or followed):
            out.append((i, i + 1, words[i]))
            i += 1
            continue
        value, i, _ = parsed
        year = out[-1:] and out[-1][2] == "năm" and 1000 <= value < 3000  # năm 2024
        written = str(value) if year else _grouped(value)
        if i + 1 < len(words) and words[i] == "phẩy":  # the fraction: a number below the
            end = i + 1                                # scales, or digits after a "không"
            while end < len(words) and words[end] in DIGITS:
                end += 1
            fraction = _parse_number(words, i + 1, scales=False)
            if words[i + 1] == "không" and end > i + 2:
                written += "," + "".join(str(UNITS[w]) for w in words[i + 1:end])
                i = end
            elif fraction is not None:
                written += "," + str(fraction[0])
                i = fraction[1]
        if list(words[i:i + 2]) == ["phần", "trăm"]:
            written += "%"
            i += 2
        out.append((start, i, written))
    return out


def inverse_numbers(text: str) -> str:
    """Spoken numbers back to digits, so the business reads amounts as numbers: "một triệu hai
    trăm nghìn đồng" → "1.200.000 đồng", "hai phẩy năm phần trăm" → "2,5%", three or more
    digit words in a row → a digit string ("không chín một hai …" → "0912…"). A lone digit
    word stays a word ("mở một tài khoản")."""
    return " ".join(w for _, _, w in written_spans(text.split()))


def inverse_numbers_timed(words: List[dict]) -> List[dict]:
    """Timed words ``{"word", "start", "end", …}`` with each spoken number merged into one
    timed word in digits (its first word's start, its last word's end)."""
    spans = written_spans([w["word"] for w in words])
    return [dict(words[a], word=text, end=words[b - 1]["end"]) if b - a > 1 or
            text != words[a]["word"] else words[a] for a, b, text in spans]


def spoken_text(text: str, numbers: str = "spoken", region: str = "north",
                four: str = "tư") -> str:
    """A transcript as a training target: numbers written out (unless ``keep``), then
    normalised."""
    if numbers == "spoken" and has_digits(text):
        text = verbalize_numbers(text, region, four)
    return normalize_text(text)
