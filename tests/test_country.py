"""The country analytics count a part under: what phonenumbers says of its whole number, regions
sharing a calling code (+1, +44) told apart however their numbers interleave."""

from __future__ import annotations

import random

import phonenumbers
import pytest
from starlette.testclient import TestClient

from dlrq.core import analytics, country
from dlrq.core.calls import run
from dlrq.core.receipt import Receipt, utc_now_iso
from dlrq.core.registration import parse_send
from dlrq.core.settings import Settings
from dlrq.core.store import register
from ingest.api import create_api
from tests.support.receipts import receipt
from workers.batch import apply

REGIONS = ("GB", "JE", "GG", "IM", "US", "CA", "PR", "DO", "DE", "FR")


def valid_numbers(region: str, count: int, rng: random.Random) -> list[str]:
    """Valid numbers phonenumbers puts in a region (near its example mobile and fixed-line numbers),
    as Vonage writes them (E.164 without +)."""
    examples = [phonenumbers.example_number_for_type(region, kind)
                for kind in (phonenumbers.PhoneNumberType.MOBILE, phonenumbers.PhoneNumberType.FIXED_LINE)]
    found: set[str] = set()
    for _ in range(20_000):
        example = rng.choice(examples)
        national = str(example.national_number)
        kept = rng.randint(3, len(national) - 2)
        candidate = f"{example.country_code}{national[:kept]}" + "".join(
            rng.choice("0123456789") for _ in range(len(national) - kept))
        if phonenumbers.is_valid_number(phonenumbers.parse("+" + candidate)) and whole_number_region(candidate) == region:
            found.add(candidate)
            if len(found) == count:
                return sorted(found)
    raise AssertionError(f"only {len(found)} numbers of {region} found")


def whole_number_region(number: str) -> str:
    return phonenumbers.region_code_for_number(phonenumbers.parse("+" + number))


@pytest.fixture(scope="module")
def numbers() -> list[str]:
    """Valid numbers of ten regions, interleaved, JE and GB numbers sharing their first six digits."""
    rng = random.Random(31)
    found = [n for region in REGIONS for n in valid_numbers(region, 12, rng)]
    found += ["447700312345", "447700123456", "447797900123", "447797123456"]
    rng.shuffle(found)
    return found


@pytest.mark.parametrize(("number", "region"), [
    ("447700900000", "GB"), ("447797900123", "JE"),  # +44: Great Britain, and Jersey's mobiles
    ("447700312345", "JE"), ("447700123456", "GB"),  # the same first six digits, two regions
    ("14155550100", "US"), ("16135550100", "CA"),  # +1: by area code
    ("79161234567", "RU"), ("77012345678", "KZ"),  # +7
    ("+33612345678", "FR"), ("4915123456789", "DE"),
    ("abc", "ZZ"), ("", "ZZ"), ("999", "ZZ"), (None, "ZZ"), ("44", "ZZ"), ("80012345678", "ZZ"),
])
def test_a_numbers_country(number, region):
    assert analytics.country(number) == region
    assert analytics.country(number) == region, "the second answer, kept, is the same"


def test_every_number_gets_phonenumbers_region_of_the_whole_number_in_any_order(numbers):
    assert {whole_number_region(n) for n in numbers} == set(REGIONS), "the numbers cover every region"
    for order in range(3):
        shuffled = random.Random(order).sample(numbers, len(numbers))
        assert [analytics.country(n) for n in shuffled] == [whole_number_region(n) for n in shuffled]


@pytest.mark.integration
def test_analytics_by_country_equal_phonenumbers_for_final_and_submitted(numbers, redis_url, r):
    """Registered and unregistered parts, interleaved: /analytics?by=country counts each part under
    its whole number's region, for `submitted` (registrations) and `final` (receipts) alike."""
    settings = Settings(redis_url=redis_url)
    expected_final: dict[str, int] = {}
    expected_submitted: dict[str, int] = {}
    batch = []
    for i, number in enumerate(numbers):
        message_id = f"CC{i:04d}"
        region = whole_number_region(number)
        if i % 3:
            send = {"message-count": "1", "messages": [{"message-id": message_id, "to": number, "status": "0",
                                                        "network": "23410", "message-price": "0.03330000"}]}
            run(r, register(parse_send(send), settings))
            expected_submitted[region] = expected_submitted.get(region, 0) + 1
        batch.append(Receipt(receipt(message_id, "delivered", 5, msisdn=number), utc_now_iso()))
        expected_final[region] = expected_final.get(region, 0) + 1
    for start in range(0, len(batch), 32):
        apply(r, batch[start:start + 32], settings)
    with TestClient(create_api(settings)) as api:
        rows = {row["key"]: row for row in api.get("/analytics", params={"by": "country"}).json()["rows"]}
    assert {k: row["final"] for k, row in rows.items() if row["final"]} == expected_final
    assert {k: row["submitted"] for k, row in rows.items() if row["submitted"]} == expected_submitted


def test_numbers_of_shared_codes_at_random_get_phonenumbers_region_whatever_came_before():
    """20,000 numbers under every calling code regions share, valid or not, most of them near a
    region's own numbers and sharing long prefixes with others: each gets what parsing the whole
    number says."""
    rng = random.Random(33)
    shared = [code for code, regions in phonenumbers.COUNTRY_CODE_TO_REGION_CODE.items() if len(regions) > 1]
    seeds = [str(phonenumbers.example_number_for_type(region, kind).national_number)
             for code in shared for region in phonenumbers.COUNTRY_CODE_TO_REGION_CODE[code]
             for kind in (phonenumbers.PhoneNumberType.MOBILE, phonenumbers.PhoneNumberType.FIXED_LINE)
             if phonenumbers.example_number_for_type(region, kind)]
    wrong = []
    for _ in range(20_000):
        code = rng.choice(shared)
        start = rng.choice(seeds)[:rng.randint(0, 8)]
        number = f"{code}{start}" + "".join(rng.choice("0123456789") for _ in range(rng.randint(0, 10)))
        try:
            parsed = phonenumbers.parse("+" + number)
            # A number no region's patterns take counts under its code's main region (GB for +44).
            expected = phonenumbers.region_code_for_number(parsed) or phonenumbers.region_code_for_country_code(code)
        except phonenumbers.NumberParseException:
            expected = "ZZ"
        if analytics.country(number) != expected:
            wrong.append((number, analytics.country(number), expected))
    assert not wrong, wrong[:10]


@pytest.mark.parametrize(("pattern", "digits"), [
    (r"7\d{9}", 1), (r"\d{2}7", 3), (r"(?:\d{2,3})7\d{4}", 4), (r"7(?:[1-3]\d\d|4[0-5])\d{6}", 3),
    (r"[2-9]\d{2}", 1), (r"(?:1|23)\d{5}", 2), (r"7\d+5", float("inf")),
])
def test_the_digits_a_pattern_decides_on(pattern, digits):
    assert country.decisive_digits(pattern) == digits
