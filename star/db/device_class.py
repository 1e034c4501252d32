"""Device classes: ``kind[:tag...]`` (``x86``, ``android:s24``), the one rule for which device
serves which class.

A device serves a class when it is of the class's kind and carries every tag the class names
(more tags are fine): the same rule decides which devices may lease a job, which measurements
count for an objective, and whether a config's device classes have a registered device.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

KINDS = ("x86", "android")


@dataclass(frozen=True)
class DeviceClass:
    kind: str
    tags: tuple[str, ...] = ()

    @classmethod
    def parse(cls, text: str) -> DeviceClass:
        """``android:s24`` -> DeviceClass("android", ("s24",)); raises ValueError naming the
        problem for an unknown kind or an empty tag."""
        kind, *tags = text.strip().split(":")
        if kind not in KINDS:
            raise ValueError(f"device class {text!r} must start with one of {', '.join(KINDS)}")
        if any(not t for t in tags):
            raise ValueError(f"device class {text!r} has an empty tag")
        return cls(kind, tuple(tags))

    @classmethod
    def of(cls, kind: str, tags: Iterable[str] = ()) -> DeviceClass:
        return cls(kind, tuple(sorted(set(tags))))

    def __str__(self) -> str:
        return ":".join((self.kind, *self.tags))

    def serves(self, kind: str | None, tags: Iterable[str]) -> bool:
        """Does a device (or a measurement's device) of ``kind`` with ``tags`` serve it?"""
        return kind == self.kind and set(self.tags) <= set(tags)

    def same(self, kind: str | None, tags: Iterable[str]) -> bool:
        """Is a job made for exactly this class (kind and the same tags)?"""
        return kind == self.kind and set(self.tags) == set(tags)
