"""The country analytics count a part under: from its number, regions sharing a calling code told apart."""

from __future__ import annotations

import pytest

from dlrq.core import analytics


@pytest.mark.parametrize(("number", "region"), [
    ("447700900000", "GB"), ("447797900123", "JE"),  # +44: Great Britain, and Jersey's mobiles
    ("14155550100", "US"), ("16135550100", "CA"),  # +1: by area code
    ("79161234567", "RU"), ("77012345678", "KZ"),  # +7
    ("+33612345678", "FR"),
    ("abc", "ZZ"), ("", "ZZ"), ("999", "ZZ"), (None, "ZZ"),
])
def test_a_numbers_country(number, region):
    assert analytics.country(number) == region
    assert analytics.country(number) == region, "the second answer, kept for its prefix, is the same"


def test_numbers_of_one_prefix_share_the_first_ones_region_and_other_prefixes_are_parsed_anew():
    assert analytics.country("447797900123") == "JE"
    assert analytics.country("447797000000") == "JE"
    assert analytics.country("447700000000") == "GB"
