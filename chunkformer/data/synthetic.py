"""Offline synthetic Vietnamese banking call-center corpus: sentences, voices and channels.

Text: call-center bot and customer sentences from templates grouped by intent, with slots for
Vietnamese readings of numbers (:func:`number_to_words`), money, dates, times, digit strings
(card, account and phone numbers read digit by digit) and person names. Transcripts are lower
case, NFC, without punctuation. Speech: espeak-ng's northern, central and southern Vietnamese
voices with its voice variants, speeds and pitches; an emotion label picks the prosody ranges.
Channel: wideband 16 kHz with a quiet room-noise floor, or telephone 8 kHz (noise at an SNR,
300-3400 Hz band, G.711 mu-law). No utterance has digital silence: real recordings never do, and
its log-fbank floor (-15.9 in every band) would dominate the CMVN variance and squeeze the
speech frames into a small fraction of the normalised range.

Held out for dev and test: open slot values (names, amounts, dates, numbers: a value is held
out when the CRC-32 of its text is 0 mod 5), so no dev/test sentence occurs in train. Held out
for test only: templates marked ``*`` (unseen surface forms) and :data:`HELD_OUT_VARIANTS`
(unseen voices). Everything follows from the seed: texts, voices and the noise samples.

    plan = plan_corpus(num_train=1200, num_dev=100, num_test=200, seed=0)  # text only, fast
    write_corpus("data/synth", plan, jobs=2)  # audio, Kaldi lists and data.list per split
"""
import functools
import hashlib
import json
import random
import shutil
import string
import subprocess
import time
import zlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Optional

import numpy as np
import soundfile as sf
from tqdm import tqdm

from chunkformer.data.augment import (NOISE_KINDS, TELEPHONE_RATE, colored_noise, scale_to_snr,
                                     telephone_line)

DIGITS = ("không", "một", "hai", "ba", "bốn", "năm", "sáu", "bảy", "tám", "chín")


@dataclass(frozen=True)
class NumberStyle:
    """Regional choices in number reading: 105 → "một trăm <odd> năm", 1000 → "một <thousand>",
    and the unit after "mươi": 24 → "hai mươi <four>", 25 → "hai mươi <five>"."""

    odd: str = "linh"
    thousand: str = "nghìn"
    four: str = "bốn"
    five: str = "lăm"


STYLES = {
    "north": NumberStyle(),
    "colloquial": NumberStyle(four="tư", five="nhăm"),
    "south": NumberStyle(odd="lẻ", thousand="ngàn"),
}


def _tens(tens: int, units: int, style: NumberStyle) -> list:
    """10..99: "mười lăm", "hai mươi mốt"; "mốt"/<four>/<five> only after "mươi"."""
    words = ["mười"] if tens == 1 else [DIGITS[tens], "mươi"]
    if units == 5:
        words.append("lăm" if tens == 1 else style.five)
    elif units:
        after_muoi = {1: "mốt", 4: style.four} if tens > 1 else {}
        words.append(after_muoi.get(units, DIGITS[units]))
    return words


def _hundreds(n: int, style: NumberStyle, full: bool) -> list:
    """0 < n < 1000; ``full`` also reads a zero hundreds digit (2025 → "... không trăm ...")."""
    hundreds, tens, units = n // 100, n // 10 % 10, n % 10
    words = [DIGITS[hundreds], "trăm"] if hundreds or full else []
    if tens:
        return words + _tens(tens, units, style)
    if units:
        return words + ([style.odd] if words else []) + [DIGITS[units]]
    return words


def number_to_words(n: int, style: str = "north") -> str:
    """Read a non-negative integer in Vietnamese: 21 → "hai mươi mốt", 105 → "một trăm linh
    năm", 2025 → "hai nghìn không trăm hai mươi lăm", 10**12 → "một nghìn tỷ".

    Zero groups are skipped; every group after the first is read with its hundreds
    ("một triệu không trăm linh năm nghìn"). ``style`` is a key of :data:`STYLES`.
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise ValueError(f"number_to_words: expected an integer ≥ 0, got {n!r}")
    if style not in STYLES:
        raise ValueError(f"number_to_words: unknown style '{style}', use one of {list(STYLES)}")
    if n == 0:
        return DIGITS[0]
    billions, rest = divmod(n, 10**9)
    words = [number_to_words(billions, style), "tỷ"] if billions else []
    groups = (rest // 10**6, rest // 1000 % 1000, rest % 1000)
    for value, name in zip(groups, ("triệu", STYLES[style].thousand, "")):
        if value:
            words += _hundreds(value, STYLES[style], full=bool(words)) + ([name] if name else [])
    return " ".join(words)


def digits_to_words(digits: str) -> str:
    """Read a digit string one digit at a time: "0912" → "không chín một hai"."""
    if not digits.isdigit() or not digits.isascii():
        raise ValueError(f"digits_to_words: expected ASCII digits, got {digits!r}")
    return " ".join(DIGITS[int(d)] for d in digits)


def money_to_words(amount: int, style: str = "north") -> str:
    """2500000 → "hai triệu năm trăm nghìn đồng"."""
    return f"{number_to_words(amount, style)} đồng"


def date_to_words(day: int, month: int, year: Optional[int] = None, mung: bool = False,
                  style: str = "north") -> str:
    """15, 3, 2025 → "ngày mười lăm tháng ba năm hai nghìn không trăm hai mươi lăm"; April is
    "tháng tư"; ``mung`` reads days 1-10 the spoken way ("mùng năm tháng tư")."""
    if not (1 <= day <= 31 and 1 <= month <= 12):
        raise ValueError(f"date_to_words: bad date day={day} month={month}")
    head = f"{'mùng' if mung and day <= 10 else 'ngày'} {number_to_words(day, style)}"
    words = f"{head} tháng {'tư' if month == 4 else number_to_words(month)}"
    return f"{words} năm {number_to_words(year, style)}" if year is not None else words


def time_to_words(hour: int, minute: int = 0, twelve_hour: bool = False) -> str:
    """14, 30 → "mười bốn giờ ba mươi phút"; with ``twelve_hour`` "hai giờ rưỡi chiều"."""
    if not (0 <= hour < 24 and 0 <= minute < 60):
        raise ValueError(f"time_to_words: bad time {hour}:{minute}")
    if not twelve_hour:
        minutes = f" {number_to_words(minute)} phút" if minute else ""
        return f"{number_to_words(hour)} giờ{minutes}"
    period = ("đêm" if hour < 4 or hour >= 22 else "sáng" if hour < 11 else "trưa" if hour < 13
              else "chiều" if hour < 18 else "tối")
    minutes = {0: "", 30: " rưỡi"}.get(minute, f" {number_to_words(minute)} phút")
    return f"{number_to_words(hour % 12 or 12)} giờ{minutes} {period}"


FAMILY_NAMES = ("nguyễn trần lê phạm hoàng huỳnh phan vũ võ đặng bùi đỗ hồ ngô dương lý trương "
                "đinh lâm mai").split()
MIDDLE_NAMES = "văn thị hữu đức minh thanh ngọc quang thu hoài xuân bảo gia kim thành công".split()
GIVEN_NAMES = ("an anh bình châu cường dũng dung giang hà hải hạnh hiếu hoa hùng hương khánh lan "
               "linh long mai minh nam nga ngọc nhung phong phúc phương quân quang sơn tâm thảo "
               "thắng thủy trang trung tuấn tùng uyên vân việt vy yến hiền khoa huy loan lộc nhi "
               "quỳnh tiến toàn trinh").split()
HONORIFICS = ("anh", "chị", "cô", "chú", "bác")
CARDS = ("thẻ tín dụng", "thẻ ghi nợ", "thẻ ghi nợ nội địa", "thẻ thanh toán quốc tế")
LOANS = ("vay mua nhà", "vay mua ô tô", "vay tiêu dùng", "vay kinh doanh", "vay thế chấp")
BANKS = tuple(f"ngân hàng {b}" for b in ("á châu", "quân đội", "ngoại thương", "công thương",
                                         "nông nghiệp", "kỹ thương", "phương đông", "quốc tế",
                                         "sài gòn thương tín", "đầu tư và phát triển"))
TERMS = (1, 3, 6, 9, 12, 18, 24, 36)
CITIES = ("hà nội", "hải phòng", "đà nẵng", "huế", "nha trang", "cần thơ", "đà lạt", "vũng tàu",
          "biên hòa", "thủ đức", "quy nhơn", "vinh", "hạ long", "buôn ma thuột", "long xuyên",
          "thái nguyên", "nam định", "phan thiết", "bình dương", "rạch giá")
STREETS = ("lê lợi", "trần hưng đạo", "nguyễn huệ", "hai bà trưng", "lý thường kiệt",
           "điện biên phủ", "nguyễn trãi", "lê duẩn", "cách mạng tháng tám", "phạm văn đồng",
           "hoàng văn thụ", "quang trung", "nguyễn văn cừ", "võ thị sáu", "bạch đằng")
BILLS = ("tiền điện", "tiền nước", "cước internet", "cước điện thoại", "học phí",
         "phí quản lý chung cư", "tiền truyền hình cáp", "phí bảo hiểm xe")
CURRENCIES = ("đô la mỹ", "euro", "yên nhật", "bảng anh", "đô la úc", "nhân dân tệ", "won hàn quốc",
              "đô la singapore")


def _digits(rng, head: str, length: int) -> str:
    return digits_to_words(head + "".join(rng.choice("0123456789") for _ in range(length)))


def _amount(rng, style: str) -> str:
    """Round amounts as people say them: 2500000, 350000, 17000, 999000000."""
    mantissa = rng.choice([rng.randint(1, 9) * 100 + rng.choice((0, 50)), rng.randint(1, 999)])
    return money_to_words(mantissa * 10 ** rng.randint(3, 6), style)


def _date(rng, style: str) -> str:
    day, month = rng.randint(1, 28), rng.randint(1, 12)
    year = rng.choice((None, None, rng.randint(2024, 2026)))
    return date_to_words(day, month, year, mung=rng.random() < 0.3, style=style)


def _time(rng, style: str) -> str:
    minute = rng.choice((0, 0, 15, 30, 45, rng.randint(1, 59)))
    return time_to_words(rng.randint(7, 21), minute, twelve_hour=rng.random() < 0.5)


def _rate(rng, style: str) -> str:
    """An interest rate: "sáu phẩy tám phần trăm"."""
    whole, tenths = number_to_words(rng.randint(3, 12)), rng.randint(0, 9)
    return f"{whole} phẩy {DIGITS[tenths]} phần trăm" if tenths else f"{whole} phần trăm"


def _full_name(rng, style: str) -> str:
    return " ".join(rng.choice(names) for names in (FAMILY_NAMES, MIDDLE_NAMES, GIVEN_NAMES))


# Open slots, (rng, number style) → text; their values are split into train and held-out ones.
OPEN_SLOTS = {
    "given": lambda rng, style: rng.choice(GIVEN_NAMES),
    "full_name": _full_name,
    "amount": _amount,
    "fee": lambda rng, style: money_to_words(rng.randint(1, 50) * 1000, style),
    "account": lambda rng, style: _digits(rng, "", rng.randint(10, 13)),
    "card4": lambda rng, style: _digits(rng, "", 4),
    "phone": lambda rng, style: _digits(rng, "0" + rng.choice("35789"), 8),
    "otp": lambda rng, style: _digits(rng, "", 6),
    "id_number": lambda rng, style: _digits(rng, "0", 11),
    "ticket": lambda rng, style: _digits(rng, "", 8),
    "hotline": lambda rng, style: _digits(rng, rng.choice(("1900", "1800")), 4),
    "date": _date,
    "birthday": lambda rng, style: date_to_words(rng.randint(1, 28), rng.randint(1, 12),
                                                 rng.randint(1960, 2005), style=style),
    "time": _time,
    "days": lambda rng, style: number_to_words(rng.randint(2, 30), style),
    "rate": _rate,
}
# Closed slots: small word lists shared by every split.
CLOSED_SLOTS = {"hon": HONORIFICS, "card": CARDS, "loan": LOANS, "bank": BANKS,
                "months": tuple(number_to_words(t) for t in TERMS), "city": CITIES,
                "street": STREETS, "bill": BILLS, "currency": CURRENCIES}


# intent → role → templates; a leading "*" marks a held-out surface form (test split only).
TEMPLATES = {
    "greeting": {
        "bot": ["ngân hàng sao việt xin chào quý khách em có thể giúp gì cho quý khách ạ",
                "xin chào {hon} {given} em là trợ lý ảo của ngân hàng sao việt",
                "chào {hon} cảm ơn {hon} đã gọi đến tổng đài chăm sóc khách hàng",
                "*chào buổi sáng {hon} {given} em có thể hỗ trợ gì cho {hon} ạ"],
        "customer": ["a lô chào em", "xin chào tôi là {full_name}",
                     "chào em tôi cần hỗ trợ một chút", "a lô tổng đài ngân hàng phải không em",
                     "*a lô em ơi tôi là khách hàng {full_name}"],
    },
    "verify_identity": {
        "bot": ["để bảo mật thông tin {hon} vui lòng cho em xin họ tên đầy đủ",
                "{hon} vui lòng đọc số căn cước công dân để em xác minh",
                "em đã gửi mã xác thực gồm sáu chữ số đến số điện thoại {phone}",
                "{hon} vui lòng cho em xin ngày sinh của chủ tài khoản",
                "cảm ơn {hon} {given} thông tin của {hon} đã được xác minh",
                "*{hon} vui lòng đọc giúp em mã xác thực vừa nhận được"],
        "customer": ["tên tôi là {full_name}", "số căn cước của tôi là {id_number}",
                     "mã xác thực là {otp}", "tôi sinh {birthday}",
                     "số điện thoại đăng ký của tôi là {phone}",
                     "*dạ tôi tên là {full_name} số điện thoại {phone}"],
    },
    "check_balance": {
        "bot": ["số dư khả dụng trong tài khoản của {hon} là {amount}",
                "tài khoản {account} hiện có số dư {amount}",
                "tính đến {time} hôm nay số dư tài khoản của {hon} là {amount}",
                "giao dịch gần nhất của {hon} là khoản nhận {amount} vào {date}",
                "*hiện tại tài khoản thanh toán của {hon} còn {amount}"],
        "customer": ["em ơi tôi muốn kiểm tra số dư tài khoản",
                     "cho tôi hỏi số dư tài khoản {account}",
                     "tài khoản của tôi còn bao nhiêu tiền vậy em",
                     "em kiểm tra giúp tôi số dư tài khoản có đuôi {card4}",
                     "*làm ơn đọc cho tôi số dư hiện tại trong tài khoản"],
    },
    "transfer_money": {
        "bot": ["{hon} muốn chuyển {amount} đến tài khoản {account} của {full_name} đúng không ạ",
                "giao dịch chuyển {amount} đã thực hiện thành công lúc {time}",
                "hạn mức chuyển tiền trong ngày của {hon} là {amount}",
                "phí chuyển khoản liên ngân hàng là {fee}",
                "{hon} vui lòng nhập mã xác thực được gửi về số {phone} để hoàn tất giao dịch",
                "*em xác nhận lệnh chuyển {amount} tới {bank} đã được ghi nhận"],
        "customer": ["tôi muốn chuyển {amount} sang tài khoản {account}",
                     "chuyển giúp tôi {amount} cho {full_name} ở {bank}",
                     "hạn mức chuyển tiền một ngày của tôi là bao nhiêu",
                     "tôi chuyển nhầm {amount} vào tài khoản {account} thì phải làm sao",
                     "*nhờ em chuyển {amount} tới số tài khoản {account} tại {bank}"],
    },
    "lock_card": {
        "bot": ["{card} có bốn số cuối {card4} của {hon} đã được khóa thành công",
                "{hon} muốn khóa tạm thời hay khóa vĩnh viễn thẻ này ạ",
                "để khóa thẻ {hon} vui lòng xác nhận bốn số cuối của thẻ",
                "thẻ mới sẽ được gửi đến {hon} trước {date}",
                "*em đã khóa {card} đuôi {card4} kể từ {time} hôm nay"],
        "customer": ["tôi bị mất thẻ muốn khóa thẻ ngay",
                     "khóa giúp tôi {card} có bốn số cuối là {card4}",
                     "thẻ của tôi bị đánh cắp em khóa giúp tôi với",
                     "tôi muốn tạm khóa {card} vì nghi bị lộ thông tin",
                     "*tôi đánh rơi {card} rồi phải khóa thẻ liền em ơi"],
    },
    "loan_inquiry": {
        "bot": ["lãi suất {loan} hiện tại là {rate} một năm",
                "với khoản vay {amount} kỳ hạn {months} tháng {hon} trả mỗi tháng khoảng {amount2}",
                "{hon} cần chuẩn bị căn cước công dân và giấy tờ chứng minh thu nhập",
                "hồ sơ vay của {hon} đã được duyệt với hạn mức {amount}",
                "*khoản {loan} của {hon} được hỗ trợ lãi suất {rate} trong năm đầu"],
        "customer": ["lãi suất {loan} hiện nay là bao nhiêu",
                     "tôi muốn vay {amount} trong {months} tháng",
                     "điều kiện để được {loan} là gì em", "tôi có thể vay tối đa bao nhiêu",
                     "*cho tôi hỏi gói {loan} có ưu đãi gì không"],
    },
    "payment_reminder": {
        "bot": ["em gọi để nhắc {hon} khoản thanh toán {amount} sẽ đến hạn vào {date}",
                "dư nợ thẻ tín dụng kỳ này của {hon} là {amount}",
                "{hon} vui lòng thanh toán tối thiểu {amount} trước {date} để tránh phí phạt",
                "khoản vay của {hon} đã quá hạn {days} ngày",
                "{hon} có thể thanh toán qua ứng dụng ngân hàng hoặc tại quầy giao dịch",
                "*em xin nhắc {hon} {given} hạn chót thanh toán là {date}"],
        "customer": ["tôi sẽ thanh toán trước {date}",
                     "cho tôi gia hạn thêm {days} ngày được không",
                     "tôi đã thanh toán {amount} vào {date} rồi", "kỳ này tôi phải trả bao nhiêu",
                     "*tuần sau tôi mới có tiền trả được em ạ"],
    },
    "complaint": {
        "bot": ["em rất xin lỗi {hon} về sự bất tiện này",
                "em đã ghi nhận khiếu nại của {hon} và sẽ phản hồi trong vòng {days} ngày làm việc",
                "mã số khiếu nại của {hon} là {ticket}",
                "em sẽ kiểm tra kỹ giao dịch này và phản hồi {hon} sớm nhất",
                "bộ phận chuyên trách sẽ liên hệ lại với {hon} qua số {phone}",
                "*em thành thật xin lỗi và sẽ chuyển yêu cầu của {hon} lên cấp trên ngay"],
        "customer": ["tôi bị trừ {amount} mà không biết lý do",
                     "tôi chuyển khoản {date} mà người nhận vẫn chưa nhận được tiền",
                     "tôi gọi mấy lần rồi mà không ai giải quyết",
                     "cây rút tiền nuốt thẻ của tôi lúc {time}", "dịch vụ gì mà chậm quá vậy",
                     "tôi không hài lòng với cách làm việc của ngân hàng",
                     "*sao tài khoản tôi tự nhiên mất {amount} vậy"],
    },
    "savings_inquiry": {
        "bot": ["lãi suất tiết kiệm kỳ hạn {months} tháng hiện là {rate} một năm",
                "sổ tiết kiệm của {hon} sẽ đáo hạn vào {date}",
                "nếu tất toán trước hạn {hon} chỉ được hưởng lãi suất không kỳ hạn",
                "*tiền lãi dự kiến khi đáo hạn là {amount}"],
        "customer": ["lãi suất gửi tiết kiệm {months} tháng là bao nhiêu",
                     "tôi muốn gửi tiết kiệm {amount}", "tôi muốn tất toán sổ tiết kiệm trước hạn",
                     "*gửi {amount} kỳ hạn {months} tháng thì được lãi bao nhiêu"],
    },
    "update_info": {
        "bot": ["số điện thoại {phone} đã được cập nhật cho tài khoản của {hon}",
                "{hon} vui lòng mang căn cước công dân đến chi nhánh gần nhất để cập nhật",
                "*thông tin của {hon} sẽ được cập nhật trong vòng {days} ngày"],
        "customer": ["tôi muốn đổi số điện thoại nhận mã xác thực sang {phone}",
                     "tôi đổi số điện thoại rồi giờ phải làm sao",
                     "*em cập nhật giúp tôi số điện thoại mới là {phone}"],
    },
    "confirm": {
        "bot": ["dạ vâng em đã ghi nhận", "em xin xác nhận lại số tài khoản {account}",
                "em xin xác nhận lại số tiền là {amount}",
                "*dạ em xin phép xác nhận lại số điện thoại {phone}"],
        "customer": ["vâng đúng rồi", "đúng rồi em", "vâng tôi đồng ý", "được em cứ làm đi",
                     "đúng là {amount} em ạ", "*chính xác em"],
    },
    "deny": {
        "bot": ["dạ vâng vậy em sẽ hủy yêu cầu này",
                "em chưa nghe rõ {hon} vui lòng nhắc lại giúp em",
                "*dạ nếu vậy em xin phép hủy giao dịch"],
        "customer": ["không phải", "tôi không thực hiện giao dịch đó",
                     "sai rồi số đúng là {account}", "tôi không đồng ý", "thôi không cần đâu em",
                     "*không đâu số tiền là {amount} chứ"],
    },
    "hold": {
        "bot": ["{hon} vui lòng chờ trong giây lát",
                "em đang kiểm tra thông tin {hon} đợi em một chút nhé", "cảm ơn {hon} đã chờ máy",
                "*xin {hon} giữ máy để em kiểm tra"],
        "customer": ["ừ em cứ kiểm tra đi", "được tôi chờ", "*em kiểm tra nhanh giúp tôi nhé"],
    },
    "callback": {
        "bot": ["em sẽ gọi lại cho {hon} lúc {time}",
                "em đã đặt lịch hẹn gọi lại cho {hon} vào {date}",
                "*em ghi nhận {hon} muốn được gọi lại vào {time}"],
        "customer": ["em gọi lại cho tôi lúc {time} được không",
                     "bây giờ tôi đang bận em gọi lại sau nhé",
                     "*khoảng {time} hãy gọi cho tôi nhé"],
    },
    "goodbye": {
        "bot": ["cảm ơn {hon} đã sử dụng dịch vụ của ngân hàng sao việt",
                "chúc {hon} một ngày tốt lành", "{hon} còn cần em hỗ trợ thêm gì không ạ",
                "nếu cần hỗ trợ {hon} vui lòng gọi tổng đài {hotline}",
                "*hẹn gặp lại {hon} {given}"],
        "customer": ["cảm ơn em nhé", "vậy thôi chào em", "không cần gì nữa cảm ơn",
                     "được rồi cảm ơn em nhiều", "*thế là xong rồi cảm ơn em"],
    },
}

# Everyday banking beyond the first intents: accounts, the app, cards, cash machines, branches,
# bills, foreign money, insurance, fraud, and the small talk of a phone line.
TEMPLATES.update({
    "open_account": {
        "bot": ["{hon} có thể mở tài khoản thanh toán trực tuyến trên ứng dụng chỉ trong năm phút",
                "để mở tài khoản {hon} cần mang theo căn cước công dân còn hiệu lực",
                "tài khoản số đẹp có phí từ {fee} tùy theo dãy số {hon} chọn",
                "tài khoản của {hon} đã được mở thành công với số {account}",
                "*mở tài khoản tại quầy hoàn toàn miễn phí {hon} nhé"],
        "customer": ["tôi muốn mở một tài khoản thanh toán mới",
                     "mở tài khoản trên mạng có mất phí không em",
                     "tôi muốn mở tài khoản cho con gái tôi được không",
                     "tôi muốn chọn số tài khoản trùng với số điện thoại",
                     "*cho tôi mở thêm một tài khoản nữa đứng tên vợ tôi"],
    },
    "digital_banking": {
        "bot": ["{hon} vui lòng đăng nhập ứng dụng bằng số điện thoại đã đăng ký",
                "mật khẩu mới phải có ít nhất tám ký tự gồm cả chữ và số",
                "{hon} hãy cập nhật ứng dụng lên phiên bản mới nhất rồi thử lại",
                "dịch vụ ngân hàng điện tử của {hon} bị tạm khóa do nhập sai mật khẩu nhiều lần",
                "em đã gửi đường dẫn đặt lại mật khẩu vào thư điện tử của {hon}",
                "*em đã mở khóa dịch vụ ngân hàng điện tử cho {hon} rồi ạ"],
        "customer": ["tôi quên mật khẩu đăng nhập ứng dụng rồi",
                     "ứng dụng cứ báo lỗi không đăng nhập được em ơi",
                     "sao dạo này tôi không nhận được tin nhắn báo số dư nữa",
                     "tôi mới đổi điện thoại nên không nhận được mã xác thực",
                     "quét mã thanh toán ở cửa hàng mà không được",
                     "*làm sao để lấy lại mật khẩu trên điện thoại vậy em"],
    },
    "card_service": {
        "bot": ["thẻ của {hon} đã được kích hoạt thành công",
                "{hon} vui lòng đổi mã pin trong lần đầu sử dụng thẻ",
                "hạn mức thẻ tín dụng của {hon} hiện là {amount}",
                "phí thường niên của {card} là {fee}",
                "thẻ mới sẽ được giao về địa chỉ nhà {hon} trong {days} ngày",
                "*thẻ của {hon} đã được nâng hạn mức lên {amount} kể từ hôm nay"],
        "customer": ["tôi muốn kích hoạt thẻ mới nhận được",
                     "tôi muốn nâng hạn mức thẻ tín dụng lên {amount}",
                     "thẻ của tôi sắp hết hạn thì làm lại thế nào em",
                     "tôi quên mã pin của thẻ rồi",
                     "thẻ bị gãy rồi tôi muốn làm lại thẻ mới",
                     "*sao thẻ của tôi quẹt ở siêu thị không được vậy"],
    },
    "cash_machine": {
        "bot": ["cây rút tiền gần nhất nằm trên đường {street}",
                "hạn mức rút tiền tại cây trong một ngày là {amount}",
                "số tiền chưa nhận được sẽ được hoàn vào tài khoản của {hon} trong {days} ngày",
                "rút tiền tại cây của ngân hàng khác mất phí {fee} mỗi lần",
                "*{hon} có thể rút tiền không cần thẻ bằng mã trên ứng dụng"],
        "customer": ["cây rút tiền gần nhà tôi ở {city} bị hỏng rồi",
                     "tôi rút tiền mà máy không nhả tiền nhưng tài khoản vẫn bị trừ",
                     "gần đường {street} có cây rút tiền nào không em",
                     "máy báo giao dịch không thành công là sao em",
                     "*tôi rút tiền ở cây ngân hàng khác thì có mất phí không"],
    },
    "branch": {
        "bot": ["chi nhánh {city} mở cửa từ bảy giờ rưỡi sáng đến năm giờ chiều",
                "phòng giao dịch trên đường {street} làm việc cả sáng thứ bảy",
                "{hon} nên đặt lịch hẹn trước để không phải chờ lâu",
                "chi nhánh {city} tạm nghỉ vào ngày lễ và chủ nhật",
                "*phòng giao dịch gần {hon} nhất nằm trên đường {street} ở {city}"],
        "customer": ["chi nhánh ở {city} làm việc đến mấy giờ",
                     "thứ bảy ngân hàng có làm việc không em",
                     "cho tôi địa chỉ phòng giao dịch gần nhất",
                     "tôi đang ở {city} thì ra chi nhánh nào",
                     "*chủ nhật tôi ra quầy được không em"],
    },
    "bill_payment": {
        "bot": ["hóa đơn {bill} tháng này của {hon} là {amount}",
                "{hon} có thể đăng ký thanh toán {bill} tự động hàng tháng",
                "giao dịch thanh toán {bill} của {hon} đã thành công",
                "em đã nạp {amount} vào số điện thoại {phone}",
                "*em đã cài đặt trích nợ tự động {bill} cho {hon}"],
        "customer": ["tôi muốn thanh toán {bill} qua ứng dụng",
                     "sao {bill} tháng này bị trừ hai lần vậy em",
                     "cho tôi hủy thanh toán tự động {bill}",
                     "nạp giúp tôi {amount} vào số điện thoại {phone}",
                     "*tháng này tôi đóng {bill} rồi mà vẫn báo nợ"],
    },
    "foreign_money": {
        "bot": ["tỷ giá bán ra {currency} hôm nay là {amount}",
                "{hon} cần mang theo hộ chiếu khi mua ngoại tệ tại quầy",
                "tiền kiều hối sẽ về tài khoản của {hon} trong vòng {days} ngày",
                "*giá mua vào {currency} sáng nay là {amount}"],
        "customer": ["hôm nay tỷ giá {currency} là bao nhiêu em",
                     "tôi muốn đổi {currency} sang tiền việt",
                     "người nhà gửi tiền từ nước ngoài về thì nhận thế nào",
                     "*tôi cần mua {currency} để đi du lịch tháng sau"],
    },
    "insurance": {
        "bot": ["gói bảo hiểm sức khỏe có phí {amount} một năm",
                "{hon} có muốn tìm hiểu thêm về bảo hiểm nhân thọ không ạ",
                "hợp đồng bảo hiểm của {hon} sẽ hết hạn vào {date}",
                "*bảo hiểm khoản vay giúp gia đình {hon} yên tâm nếu có rủi ro"],
        "customer": ["tôi không muốn mua bảo hiểm đâu em",
                     "bảo hiểm này có bắt buộc khi vay không",
                     "tôi muốn hủy hợp đồng bảo hiểm đã mua",
                     "*mua bảo hiểm rồi thì được bồi thường những gì"],
    },
    "fraud": {
        "bot": ["ngân hàng không bao giờ yêu cầu {hon} đọc mã xác thực qua điện thoại",
                "{hon} tuyệt đối không bấm vào đường link lạ gửi qua tin nhắn",
                "em phát hiện giao dịch bất thường {amount} tại {city} lúc {time}",
                "em đã tạm khóa tài khoản để bảo vệ tiền của {hon}",
                "*nếu nghi ngờ bị lừa đảo {hon} hãy gọi ngay tổng đài {hotline}"],
        "customer": ["có người gọi tự xưng là nhân viên ngân hàng bảo tôi đọc mã xác thực",
                     "tôi lỡ bấm vào một đường link lạ rồi phải làm sao",
                     "giao dịch đó không phải do tôi thực hiện",
                     "tôi nghi tài khoản của mình bị người khác đăng nhập",
                     "*tôi nhận được tin nhắn trúng thưởng có phải lừa đảo không"],
    },
    "small_talk": {
        "bot": ["dạ em nghe rõ ạ", "{hon} cần em nhắc lại thông tin nào không ạ",
                "đường truyền hơi kém {hon} vui lòng nói to hơn giúp em",
                "dạ không có gì đâu ạ", "*dạ em xin nhắc lại chậm hơn ạ"],
        "customer": ["ừ", "à vâng", "để tôi xem đã", "em nói chậm lại một chút được không",
                     "a lô em có nghe rõ không", "tôi nghe không rõ lắm",
                     "chờ tôi lấy giấy bút ghi lại", "*ờ để tôi tìm cái thẻ đã"],
    },
})

ACCENTS = {"north": "vi", "central": "vi-vn-x-central", "south": "vi-vn-x-south"}
# Number readings a speaker of each accent uses (drawn per sentence).
ACCENT_STYLES = {"north": ("north", "north", "colloquial"), "central": ("north",),
                 "south": ("south",)}
# espeak-ng variants (`espeak-ng --voices=variant`), chosen by name: the whisper, robot and
# novelty variants are left out. The held-out ones speak only in the test split.
TRAIN_VARIANTS = ("m1 m2 m3 m4 m5 m6 m8 f1 f2 f3 f4 klatt klatt2 klatt3 adam Alex Andy aunty "
                  "belinda boris david ed edward Gene iven iven3 john linda max michel norbert "
                  "paul rob steph steph3 travis victor zac Lee Mario").split()
HELD_OUT_VARIANTS = "m7 f5 klatt4 Annie benjamin Michael quincy shelby iven2 steph2".split()


@dataclass(frozen=True)
class Prosody:
    """Inclusive ranges of espeak-ng settings: words per minute (-s), pitch (-p 0-99),
    amplitude (-a; most variants clip above ~100) and extra gap between words (-g, 10 ms)."""

    speed: tuple
    pitch: tuple
    amplitude: tuple
    word_gap: tuple


EMOTIONS = {
    "calm": Prosody(speed=(140, 165), pitch=(40, 55), amplitude=(60, 80), word_gap=(0, 1)),
    "happy": Prosody(speed=(160, 185), pitch=(58, 75), amplitude=(70, 90), word_gap=(0, 0)),
    "sad": Prosody(speed=(120, 140), pitch=(25, 40), amplitude=(40, 60), word_gap=(1, 3)),
    "angry": Prosody(speed=(170, 190), pitch=(50, 70), amplitude=(90, 110), word_gap=(0, 0)),
}
# Emotion weights: a bot stays calm or friendly; complaining customers are mostly angry.
BOT_EMOTIONS = {"calm": 3, "happy": 2}
CUSTOMER_EMOTIONS = {"calm": 4, "happy": 2, "sad": 1.5, "angry": 2.5}
COMPLAINT_EMOTIONS = {"calm": 1, "sad": 1, "angry": 3}
SNR_DB = (15.0, 30.0)  # telephone line noise
ROOM_SNR_DB = (35.0, 50.0)  # the noise floor of a quiet room and a headset microphone
WIDEBAND_RATE = 16000
UNSEEN_TEMPLATE_SHARE = 0.5  # chance that a test draw uses a "*" template
MAX_TRIES = 1000


@dataclass(frozen=True)
class Utterance:
    """Everything that determines one utterance's audio; ``speaker`` is ``<accent>-<variant>``,
    ``voice`` the espeak-ng voice; ``snr_db``/``noise`` the added noise (line noise on the
    telephone channel, a room-noise floor on the wideband one)."""

    key: str
    text: str
    intent: str
    role: str
    speaker: str
    accent: str
    voice: str
    emotion: str
    speed: int
    pitch: int
    amplitude: int
    word_gap: int
    line: str  # "telephone" (8 kHz) or "wideband" (16 kHz)
    snr_db: float
    noise: str
    noise_seed: int
    unseen_voice: bool
    unseen_template: bool
    shuffled: bool = False  # words of two sentences in random order (``plan_corpus``)


def _is_held_out(value: str) -> bool:
    """The fixed train / held-out partition of open slot values (one in five is held out)."""
    return zlib.crc32(value.encode("utf-8")) % 5 == 0


def _open_value(name: str, rng, style: str, held_out: bool) -> str:
    for _ in range(MAX_TRIES):
        value = OPEN_SLOTS[name](rng, style)
        if _is_held_out(value) == held_out:
            return value
    raise RuntimeError(f"slot '{name}': no {'held-out' if held_out else 'train'} value drawn")


def fill_template(template: str, rng: random.Random, style: str = "north",
                  held_out: bool = False) -> str:
    """Fill every ``{slot}`` (``{amount2}`` is a second ``amount``); a repeated slot gets one
    value. Open slots take train or held-out values, closed ones any value."""
    values = {}
    for _, field, _, _ in string.Formatter().parse(template):
        if field and field not in values:
            name = field if field in OPEN_SLOTS or field in CLOSED_SLOTS else \
                field.rstrip("0123456789")
            values[field] = (rng.choice(CLOSED_SLOTS[name]) if name in CLOSED_SLOTS
                             else _open_value(name, rng, style, held_out))
    return template.format(**values)


def _new_sentence(rng, split: str, style: str, used: set, role: Optional[str] = None,
                  intent: Optional[str] = None) -> tuple:
    """Draw (intent, role, text, unseen_template), of the given role / intent when set. Train
    may repeat its own sentences (short replies recur in calls); a dev or test text must not
    be in ``used`` (all earlier texts)."""
    # Drawn once: redrawing it with every try would tilt test towards held-out templates,
    # whose sentences never collide with train's (short replies without slots always do).
    unseen = split == "test" and rng.random() < UNSEEN_TEMPLATE_SHARE
    for _ in range(MAX_TRIES):
        drawn_intent = intent or rng.choice(list(TEMPLATES))
        drawn_role = role or rng.choice(list(TEMPLATES[drawn_intent]))
        templates = [t[1:] if unseen else t for t in TEMPLATES[drawn_intent][drawn_role]
                     if t.startswith("*") == unseen]
        text = fill_template(rng.choice(templates), rng, style, held_out=split != "train")
        if split == "train" or text not in used:
            used.add(text)
            return drawn_intent, drawn_role, text, unseen
    raise RuntimeError(f"{split}: no new sentence in {MAX_TRIES} draws (held-out values used up)")


VOCABULARY_DRAWS = 3000  # train sentences whose words make the train vocabulary


@functools.lru_cache(maxsize=1)
def train_vocabulary() -> tuple:
    """Every word of a fixed seeded draw of train sentences (train slot values only), sorted.

    Templates say their words unevenly: a word of one template is heard a few times in a corpus
    where the digits are heard thousands of times, and the default recipe's model found 9% of
    the test words heard 1-9 times in training, 34% of those heard 10-49 times and 96% of
    those heard 200+ times. Shuffled utterances draw part of their words evenly from this list.
    """
    rng, words = random.Random("vocabulary"), set()
    for _ in range(VOCABULARY_DRAWS):
        accent = rng.choice(list(ACCENTS))
        words.update(_new_sentence(rng, "train", rng.choice(ACCENT_STYLES[accent]), set())[2]
                     .split())
    return tuple(sorted(words))


def domain_text(num: int, seed: int = 0) -> list:
    """``num`` natural sentences of the corpus's templates with train slot values (some
    repeat, as a call center's scripts do), without audio: in-domain text for a language
    model. Unlike train transcripts they are never shuffled; they share no sentence with
    dev or test by construction only when those use held-out values or templates."""
    rng = random.Random(f"{seed}/domain_text")
    out = []
    for _ in range(num):
        accent = rng.choice(list(ACCENTS))
        out.append(_new_sentence(rng, "train", rng.choice(ACCENT_STYLES[accent]), set())[2])
    return out


def speaking_style(rng, intent: str, role: str) -> dict:
    """An emotion for the role and intent, and espeak-ng prosody drawn from its ranges →
    the Utterance fields emotion, speed, pitch, amplitude and word_gap."""
    weights = (BOT_EMOTIONS if role == "bot" else
               COMPLAINT_EMOTIONS if intent == "complaint" else CUSTOMER_EMOTIONS)
    emotion = rng.choices(list(weights), list(weights.values()))[0]
    prosody = EMOTIONS[emotion]
    return dict(emotion=emotion, speed=rng.randint(*prosody.speed),
                pitch=rng.randint(*prosody.pitch), amplitude=rng.randint(*prosody.amplitude),
                word_gap=rng.randint(*prosody.word_gap))


def _plan_utterance(rng, split: str, index: int, telephone: bool, unseen_voice: bool,
                    shuffled: bool, used: set, even_word_fraction: float = 0.0,
                    mix=None) -> Utterance:
    """One utterance; ``mix`` (its own generator) draws the shuffling, so that the shuffle
    settings change no other draw: train's natural sentences, and with them dev and test,
    stay the same."""
    accent = rng.choice(list(ACCENTS))
    variant = rng.choice(HELD_OUT_VARIANTS if unseen_voice else TRAIN_VARIANTS)
    intent, role, text, unseen_template = _new_sentence(
        rng, split, rng.choice(ACCENT_STYLES[accent]), used)
    if shuffled:  # the words of this sentence and of a second one, as many as this one has
        other = _new_sentence(mix, split, mix.choice(ACCENT_STYLES[accent]), set())[2]
        words = text.split() + other.split()
        mix.shuffle(words)
        text = " ".join(mix.choice(train_vocabulary()) if mix.random() < even_word_fraction
                        else w for w in words[:len(text.split())])
    speaker = f"{accent}-{variant}"
    return Utterance(
        key=f"{speaker}-{split}-{index:05d}", text=text, intent=intent, role=role,
        speaker=speaker, accent=accent, voice=f"{ACCENTS[accent]}+{variant}",
        **speaking_style(rng, intent, role), line="telephone" if telephone else "wideband",
        snr_db=round(rng.uniform(*(SNR_DB if telephone else ROOM_SNR_DB)), 1),
        noise=rng.choice(NOISE_KINDS), noise_seed=rng.getrandbits(32),
        unseen_voice=unseen_voice, unseen_template=unseen_template, shuffled=shuffled)


def plan_corpus(num_train: int, num_dev: int, num_test: int, seed: int = 0,
                telephone_fraction: float = 0.5, unseen_voice_fraction: float = 0.5,
                shuffled_fraction: float = 0.0, even_word_fraction: float = 0.0) -> dict:
    """Draw every utterance of the corpus (no audio yet) → {"train"|"dev"|"test": [Utterance]}.

    Dev and test sentences are new (held-out slot values, and in test also unseen templates);
    ``unseen_voice_fraction`` of test speaks with held-out voices; ``telephone_fraction`` of each
    split goes through the telephone channel. ``shuffled_fraction`` of train speaks words drawn
    at random from two sentences (as many words as the first has): a few hundred templates are
    otherwise learnt as a language model, and a model trained on them alone decodes unseen
    templates as fragments of seen ones (default recipe: CER 5% on seen vs 54% on unseen
    templates; 40% shuffled: 4.8% vs 20.6%). ``even_word_fraction`` of the words of a shuffled
    utterance are drawn evenly from the train vocabulary (:func:`train_vocabulary`), so that
    the words of rare templates are heard often enough to be learnt. Each split draws
    from its own seeded generator.
    """
    if min(num_train, num_dev, num_test) < 0:
        raise ValueError(f"plan_corpus: negative utterance count in {num_train, num_dev, num_test}")
    fractions = dict(telephone_fraction=telephone_fraction,
                     unseen_voice_fraction=unseen_voice_fraction,
                     shuffled_fraction=shuffled_fraction,
                     even_word_fraction=even_word_fraction)
    if not all(0 <= f <= 1 for f in fractions.values()):
        raise ValueError(f"plan_corpus: fractions must lie in [0, 1], got {fractions}")
    used, plan = set(), {}
    for split, n in (("train", num_train), ("dev", num_dev), ("test", num_test)):
        rng = random.Random(f"{seed}/{split}")
        telephone = set(rng.sample(range(n), round(n * telephone_fraction)))
        num_unseen = round(n * unseen_voice_fraction) if split == "test" else 0
        unseen = set(rng.sample(range(n), num_unseen))
        mix = random.Random(f"{seed}/{split}/shuffle")
        shuffled = set(mix.sample(range(n), round(n * shuffled_fraction))
                       if split == "train" else ())
        plan[split] = [_plan_utterance(rng, split, i, i in telephone, i in unseen,
                                       i in shuffled, used, even_word_fraction, mix)
                      for i in range(n)]
    return plan


# Product, program and branch names made of words the corpus says rarely (tens of times, where
# common words are said thousands of times) and never together: what a bank puts on a hotword
# list and a model trained on general speech gets wrong.
RARE_PHRASES = ("hoa mai", "kim long", "minh châu", "hải đăng", "phương đông", "nam long",
                "quang minh", "hoàng kim", "an bình", "tâm an", "vĩnh long", "thái bình",
                "bình minh", "khánh lộc")
# Sentences that carry a phrase, with the corpus's honorifics.
PHRASE_CARRIERS = ("tôi muốn đăng ký gói {phrase}", "{hon} ơi cho tôi hỏi về sản phẩm {phrase}",
                   "em xin giới thiệu chương trình {phrase} của ngân hàng",
                   "tôi đang ở chi nhánh {phrase}", "{hon} tư vấn giúp tôi thẻ {phrase} với",
                   "gói {phrase} có lãi suất bao nhiêu vậy em",
                   "dạ {hon} có thể mở thẻ {phrase} ngay hôm nay ạ")


def plan_phrase_set(phrases, num_with: int, num_without: int, seed: int = 0) -> list:
    """An evaluation set for hotwords: ``num_with`` utterances that say one of ``phrases``
    in a carrier sentence (phrases in turn) and ``num_without`` test sentences of the corpus
    (held-out values) that say none of them; half telephone, voices held out from training.
    Keys ``phrase-NNNNN`` / ``plain-NNNNN``; render with :func:`write_corpus`."""
    rng = random.Random(f"{seed}/phrases")
    items = []
    for i in range(num_with + num_without):
        with_phrase = i < num_with
        if with_phrase:
            text = rng.choice(PHRASE_CARRIERS).format(phrase=phrases[i % len(phrases)],
                                                      hon=rng.choice(HONORIFICS))
            intent, role = "product_info", "customer"
        else:
            for _ in range(MAX_TRIES):
                intent, role, text, _ = _new_sentence(rng, "dev", "north", set())
                if not any(p in f" {text} " for p in (f" {q} " for q in phrases)):
                    break
        accent = rng.choice(list(ACCENTS))
        variant = rng.choice(HELD_OUT_VARIANTS)
        telephone = i % 2 == 1
        speaker = f"{accent}-{variant}"
        items.append(Utterance(
            key=f"{'phrase' if with_phrase else 'plain'}-{i:05d}", text=text, intent=intent,
            role=role, speaker=speaker, accent=accent, voice=f"{ACCENTS[accent]}+{variant}",
            **speaking_style(rng, intent, role), line="telephone" if telephone else "wideband",
            snr_db=round(rng.uniform(*(SNR_DB if telephone else ROOM_SNR_DB)), 1),
            noise=rng.choice(NOISE_KINDS), noise_seed=rng.getrandbits(32), unseen_voice=True,
            unseen_template=with_phrase))
    return items


def _run(cmd: list, stdin: bytes, key: str) -> bytes:
    result = subprocess.run(cmd, input=stdin, capture_output=True)
    if result.returncode != 0:
        raise RuntimeError(f"{key}: {cmd[0]} failed: {result.stderr.decode(errors='replace')}")
    return result.stdout


def _espeak(u: Utterance) -> tuple:
    """espeak-ng's WAV on stdout → (float32 samples in [-1, 1], rate). Its header's sizes are
    placeholders (stdout cannot seek back), so the samples are everything after "data"."""
    cmd = ["espeak-ng", "-v", u.voice, "-s", str(u.speed), "-p", str(u.pitch),
           "-a", str(u.amplitude), "-g", str(u.word_gap), "--stdout", u.text]
    wav = _run(cmd, b"", u.key)
    data = wav.find(b"data", 12) + 8
    if not wav.startswith(b"RIFF") or data < 12 or len(wav) < data + 2:
        raise RuntimeError(f"{u.key}: espeak-ng gave no audio for '{u.text}'")
    samples = np.frombuffer(wav[data:len(wav) - (len(wav) - data) % 2], dtype="<i2")
    return samples.astype(np.float32) / 32768, int.from_bytes(wav[24:28], "little")


def _sox(x: np.ndarray, rate: int, effects: list, key: str) -> np.ndarray:
    """Run sox effects on float samples (-R -D: repeatable, no dither) → float32 samples."""
    fmt = ["-t", "raw", "-e", "floating-point", "-b", "32", "-c", "1"]
    cmd = ["sox", "-R", "-D", *fmt, "-r", str(rate), "-", *fmt, "-", *effects]
    return np.frombuffer(_run(cmd, x.astype("<f4").tobytes(), key), dtype="<f4")


def synthesize(u: Utterance) -> tuple:
    """Render one utterance → (int16 samples, sample rate).

    Wideband: espeak-ng, resampled to 16 kHz, plus a room-noise floor at ``snr_db``.
    Telephone: resampled to 8 kHz (sox), then :func:`chunkformer.data.augment.telephone_line`
    (300-3400 Hz band, noise at ``snr_db`` relative to the band-limited speech, G.711 mu-law
    round trip). The noise comes from ``noise_seed``, so output is repeatable.
    """
    speech, rate = _espeak(u)
    out_rate = WIDEBAND_RATE if u.line == "wideband" else TELEPHONE_RATE
    x = _sox(speech, rate, ["rate", str(out_rate)], u.key).astype(np.float64) * 32768.0
    noise = colored_noise(np.random.default_rng(u.noise_seed).standard_normal(len(x)), u.noise)
    if u.line == "telephone":
        return telephone_line(x, noise, u.snr_db), TELEPHONE_RATE
    x = x + scale_to_snr(noise, x, u.snr_db)
    return np.clip(np.round(x), -32768, 32767).astype(np.int16), WIDEBAND_RATE


def _render(job: tuple) -> tuple:
    """Pool worker: (Utterance, wav path) → (key, duration in seconds); writes 16-bit PCM."""
    u, path = job
    samples, rate = synthesize(u)
    sf.write(path, samples, rate, subtype="PCM_16")
    return u.key, len(samples) / rate


@dataclass
class SplitSummary:
    """What :func:`write_corpus` did for one split (``skipped``: it was complete already)."""

    split: str
    utterances: int
    telephone: int
    hours: float
    seconds: float
    skipped: bool


def _write_lists(folder: Path, items: list, durations: dict) -> None:
    """Kaldi ``wav.scp``, ``text``, ``utt2spk``, ``utt2dur`` and jsonl ``data.list``, sorted
    by key; audio paths are absolute."""
    items = sorted(items, key=lambda u: u.key)
    wav = {u.key: str((folder / "wav" / f"{u.key}.wav").resolve()) for u in items}
    rows = [json.dumps({
        "key": u.key, "wav": wav[u.key], "txt": u.text, "duration": round(durations[u.key], 3),
        "speaker": u.speaker, "intent": u.intent, "emotion": u.emotion, "line": u.line,
        "role": u.role, "accent": u.accent, "snr_db": u.snr_db, "unseen_voice": u.unseen_voice,
        "unseen_template": u.unseen_template, "shuffled": u.shuffled}, ensure_ascii=False)
        for u in items]
    lists = {"wav.scp": [f"{u.key} {wav[u.key]}" for u in items],
             "text": [f"{u.key} {u.text}" for u in items],
             "utt2spk": [f"{u.key} {u.speaker}" for u in items],
             "utt2dur": [f"{u.key} {durations[u.key]:.3f}" for u in items],
             "data.list": rows}
    for name, lines in lists.items():
        (folder / name).write_text("".join(f"{line}\n" for line in lines), encoding="utf-8")


def _write_split(split: str, items: list, folder: Path, pool, progress: bool) -> SplitSummary:
    """Render one split unless its ``.done`` marker holds the digest of this very plan."""
    start = time.perf_counter()
    digest = hashlib.sha256(json.dumps([asdict(u) for u in items]).encode()).hexdigest()
    done, skipped = folder / ".done", False
    if done.is_file() and done.read_text().strip() == digest:
        lines = (folder / "utt2dur").read_text(encoding="utf-8").split("\n")
        durations, skipped = {k: float(d) for k, d in (ln.split() for ln in lines if ln)}, True
    else:
        done.unlink(missing_ok=True)
        (folder / "wav").mkdir(parents=True, exist_ok=True)
        jobs = [(u, folder / "wav" / f"{u.key}.wav") for u in items]
        for stale in set((folder / "wav").glob("*.wav")) - {path for _, path in jobs}:
            stale.unlink()  # left by an earlier, different plan
        results = pool.map(_render, jobs)
        durations = dict(tqdm(results, total=len(jobs), desc=split, disable=not progress))
        _write_lists(folder, items, durations)
        done.write_text(digest + "\n")
    return SplitSummary(split, len(items), sum(u.line == "telephone" for u in items),
                        sum(durations.values()) / 3600, time.perf_counter() - start, skipped)


def write_corpus(out_dir, plan: dict, jobs: int = 2, progress: bool = True) -> list:
    """Render a :func:`plan_corpus` plan into ``<out_dir>/<split>/`` (``wav/``, Kaldi lists,
    ``data.list``) with ``jobs`` processes → a :class:`SplitSummary` per split.

    A split whose ``.done`` marker matches its plan is skipped; a changed plan is redone.
    """
    for tool in ("espeak-ng", "sox"):
        if shutil.which(tool) is None:
            raise RuntimeError(f"{tool} is required: apt-get install {tool}")
    out_dir = Path(out_dir).resolve()
    if any(c.isspace() for c in str(out_dir)):
        raise ValueError(f"{out_dir}: Kaldi lists cannot hold paths with whitespace")
    # Threads suffice: the work runs in the espeak-ng and sox child processes, and numpy
    # releases the GIL; a process pool would only add pickling and start-method trouble.
    with ThreadPoolExecutor(jobs) as pool:
        return [_write_split(split, items, out_dir / split, pool, progress)
                for split, items in plan.items()]
