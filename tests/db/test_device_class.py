"""Device classes: parsing, and the one rule for which device serves which class."""

from __future__ import annotations

import pytest

from star.db.device_class import DeviceClass


def test_a_class_parses_and_prints_back() -> None:
    assert DeviceClass.parse("android:s24:big") == DeviceClass("android", ("s24", "big"))
    assert str(DeviceClass.parse("android:s24")) == "android:s24"
    assert DeviceClass.parse("x86") == DeviceClass("x86")


@pytest.mark.parametrize("bad", ["", "ios", "android:", "x86::a", "arm:s24"])
def test_an_unknown_kind_or_an_empty_tag_is_refused(bad: str) -> None:
    with pytest.raises(ValueError, match="device class"):
        DeviceClass.parse(bad)


def test_a_device_serves_a_class_when_it_carries_every_tag() -> None:
    cls = DeviceClass.parse("android:s24")
    assert cls.serves("android", ["s24", "lab2"])  # more tags are fine
    assert not cls.serves("android", ["pixel"])
    assert not cls.serves("x86", ["s24"])
    assert DeviceClass.parse("android").serves("android", [])
    assert cls.same("android", ["s24"]) and not cls.same("android", ["s24", "lab2"])
