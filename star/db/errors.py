"""Errors raised by the repository; each maps to one HTTP status in ``star.lab``."""

from __future__ import annotations


class RepoError(Exception):
    """Root of every error a repository function raises on purpose."""


class NotFoundError(RepoError):
    """The named row does not exist (404)."""


class AlreadyExistsError(RepoError):
    """A unique key is taken: another caller got there first (409)."""


class ForbiddenError(RepoError):
    """The caller may not touch this row, e.g. another device's job (403)."""


class ConflictError(RepoError):
    """The row is not in a state that allows this, e.g. a stale lease (409)."""


class InvalidError(RepoError):
    """The input contradicts stored state; ``loc`` names the field (422)."""

    def __init__(self, loc: tuple[str | int, ...], message: str) -> None:
        super().__init__(f"{'.'.join(str(p) for p in loc)}: {message}")
        self.loc = loc
        self.message = message
