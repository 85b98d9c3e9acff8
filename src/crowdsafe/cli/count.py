"""Placeholder until implemented."""


def count() -> None:
    """Not implemented yet."""
