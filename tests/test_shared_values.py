"""Shared values: one object for every holder of the same text or figure."""

from __future__ import annotations

from decimal import Decimal

from warden.model import shared, shared_decimal


def test_equal_texts_become_one_object_and_other_values_pass_through() -> None:
    a, b = "".join(["ali", "ce"]), "".join(["al", "ice"])
    assert a is not b
    assert shared(a) is shared(b)
    assert shared(None) is None
    assert shared(7) == 7


def test_equal_figures_share_a_decimal_but_keep_how_they_were_written() -> None:
    assert shared_decimal(3) is shared_decimal(3)
    assert shared_decimal(Decimal("1.500000")) is shared_decimal(Decimal("1.500000"))
    assert str(shared_decimal(Decimal("1.500000"))) == "1.500000"
    assert str(shared_decimal(Decimal("1.5"))) == "1.5"  # equal, yet its own Decimal
    assert shared_decimal(True) == Decimal(1)  # as Decimal(True) reads a JSON `true`
    assert shared_decimal("2.25") == Decimal("2.25")
