"""Config errors: every problem is ``field: reason`` (``objectives[2]: unknown metric``)."""

from __future__ import annotations

from collections.abc import Sequence

from pydantic import ValidationError


class SearchConfigError(ValueError):
    """One or more problems, each ``field: reason``."""

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems = list(problems)
        super().__init__("; ".join(self.problems))


def field_path(loc: Sequence[str | int]) -> str:
    """``("budgets", 0, "max")`` -> ``budgets[0].max``."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out

def _problems(exc: ValidationError) -> list[str]:
    out: list[str] = []
    for err in exc.errors():
        loc = field_path(err["loc"])
        message = str(err["msg"]).removeprefix("Value error, ")
        for line in message.splitlines():
            if not loc:  # cross-field checks name their fields themselves
                out.append(line)
            elif line.startswith("["):  # "[i]: ..." from a list validator
                out.append(f"{loc}{line}")
            else:
                out.append(f"{loc}: {line}")
    return out
