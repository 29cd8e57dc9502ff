"""Who runs a network: the operator and country of an MCC-MNC code (Vonage's `network-code`), from
the table of the `mobile-codes` package (MPL-2.0; ITU-T E.212 and the operators' own lists)."""

from __future__ import annotations

from functools import lru_cache

import mobile_codes


@lru_cache(maxsize=4096)
def network(code: str) -> tuple[str | None, str | None]:
    """(Operator, ISO 3166-1 alpha-2 country) of a network code; None for what the table lacks."""
    if not (code.isascii() and code.isdigit() and len(code) in (5, 6)):
        return None, None
    mcc, mnc = code[:3], code[3:]
    try:
        found = mobile_codes.mcc_mnc(mcc, mnc)
        operator = found.brand or found.operator or None
    except KeyError:
        operator = None
    return operator, _country(mcc)


def _country(mcc: str) -> str | None:
    """The country of a mobile country code; where several share it (234: GB, GG, IM, JE), the one
    with the most codes of its own, the first listed on a tie (208: FR before YT)."""
    try:
        countries = mobile_codes.mcc(mcc)
    except KeyError:
        return None
    if not countries:
        return None
    mccs = [len(c.mcc) if isinstance(c.mcc, list) else 1 for c in countries]
    return countries[mccs.index(max(mccs))].alpha2
