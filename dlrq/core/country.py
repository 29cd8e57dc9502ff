"""The country of a phone number, as phonenumbers' region_code_for_number says of the whole number,
without parsing each number: parsing costs about 40 µs, and the worker asks for every receipt.

A calling code of one region (+49, +33, +91...) names it whatever follows. Where regions share a
code (+1, +44, +7...), phonenumbers decides by matching the national number against the regions'
patterns (`447700312345` is JE, `447700123456` GB). Those patterns decide on their first digits
and then accept any digits up to a length, so two numbers of the same length that agree on the
digits any pattern of their code examines get the same region: the first of them is parsed, and
its answer kept for the others. How many digits that is comes from phonenumbers' own metadata,
read once per code (`decisive_digits`); a pattern this cannot bound sends its code's numbers to be
parsed one by one.
"""

from __future__ import annotations

import math
import re
from functools import lru_cache
from re import _constants as sre  # the parsed form of a regular expression (stable since 3.11)
from re import _parser as sre_parse

import phonenumbers
from phonenumbers import COUNTRY_CODE_TO_REGION_CODE, PhoneMetadata

UNKNOWN_COUNTRY = "ZZ"
ANSWERS_KEPT = 65_536
_DESCS = ("general_desc", "premium_rate", "toll_free", "shared_cost", "voip", "personal_number", "pager", "uan",
          "voicemail", "fixed_line", "mobile")
_REPEATS = (sre.MAX_REPEAT, sre.MIN_REPEAT, sre.POSSESSIVE_REPEAT)
_ANY_DIGIT = ([(sre.CATEGORY, sre.CATEGORY_DIGIT)], [(sre.RANGE, (48, 57))])
_answers: dict[str, str] = {}


def country(number: str | None) -> str:
    """ISO 3166-1 alpha-2 of a phone number (E.164, with or without +), ZZ when it is not one."""
    digits = (number or "").lstrip("+")
    if not (digits.isascii() and digits.isdigit()):
        return UNKNOWN_COUNTRY
    code = next((digits[:n] for n in (1, 2, 3) if int(digits[:n]) in COUNTRY_CODE_TO_REGION_CODE), None)
    if code is None:
        return UNKNOWN_COUNTRY
    national = digits[len(code):]
    if not 2 <= len(national) <= 17:
        return _parsed(digits)  # too short or long, unless a national prefix comes off
    if len(COUNTRY_CODE_TO_REGION_CODE[int(code)]) == 1:
        return _known(phonenumbers.region_code_for_country_code(int(code)))
    decisive, prefix = _decided_by(int(code))
    if decisive is None or prefix.match(national):
        return _parsed(digits)  # a number its code's patterns cannot bound, or one with a national prefix
    key = f"{digits[:len(code) + decisive]}:{len(digits)}"
    region = _answers.get(key)
    if region is None:
        if len(_answers) >= ANSWERS_KEPT:
            _answers.clear()
        region = _answers[key] = _parsed(digits)
    return region


@lru_cache(maxsize=None)
def _decided_by(code: int) -> tuple[int | None, re.Pattern[str]]:
    """(The national digits the code's patterns examine, None if unbounded; its national prefix)."""
    patterns = []
    for region in COUNTRY_CODE_TO_REGION_CODE[code]:
        metadata = PhoneMetadata.metadata_for_region(region)
        patterns.append(metadata.leading_digits)
        patterns += [desc.national_number_pattern for desc in (getattr(metadata, d) for d in _DESCS) if desc]
    depth = max(decisive_digits(p) for p in patterns if p)
    main = PhoneMetadata.metadata_for_region(phonenumbers.region_code_for_country_code(code))
    prefix = re.compile(main.national_prefix_for_parsing or "(?!)")
    return (None if depth == math.inf else int(depth)), prefix


def decisive_digits(pattern: str) -> float:
    """How many leading digits decide whether digits-only text matches `pattern`, given its length:
    past them, the pattern takes any digit (math.inf when no bound can be read)."""
    return max(0.0, _extent(sre_parse.parse(pattern))[2])


def _extent(items) -> tuple[float, float, float]:  # type: ignore[no-untyped-def]
    """(Shortest, longest, end of the furthest element that examines its digit) of a parsed sequence."""
    low = high = 0.0
    deciding = -math.inf
    for op, arg in items:
        if op in (sre.LITERAL, sre.IN):
            if not (op is sre.IN and arg in _ANY_DIGIT):
                deciding = max(deciding, high + 1)
            low, high = low + 1, high + 1
        elif op in _REPEATS:
            least, most, body = arg
            most = math.inf if most is sre.MAXREPEAT else most
            b_low, b_high, b_deciding = _extent(body)
            if b_deciding > -math.inf:
                deciding = max(deciding, math.inf if most == math.inf else high + (most - 1) * b_high + b_deciding)
            low += least * b_low
            high += 0 if b_high == 0 else most * b_high
        elif op in (sre.SUBPATTERN, sre.BRANCH):
            branches = [_extent(arg[-1])] if op is sre.SUBPATTERN else [_extent(b) for b in arg[1]]
            deciding = max(deciding, high + max(b[2] for b in branches))
            low += min(b[0] for b in branches)
            high += max(b[1] for b in branches)
        elif op is not sre.AT:
            return low, math.inf, math.inf
    return low, high, deciding


def _parsed(digits: str) -> str:
    try:
        parsed = phonenumbers.parse("+" + digits)
    except phonenumbers.NumberParseException:
        return UNKNOWN_COUNTRY
    return _known(phonenumbers.region_code_for_number(parsed)
                  or phonenumbers.region_code_for_country_code(parsed.country_code))


def _known(region: str | None) -> str:
    return region if region and region != phonenumbers.UNKNOWN_REGION and region != "001" else UNKNOWN_COUNTRY
