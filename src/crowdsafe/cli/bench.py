"""Placeholder until implemented."""


def bench() -> None:
    """Not implemented yet."""
