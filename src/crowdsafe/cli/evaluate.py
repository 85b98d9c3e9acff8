"""Placeholder until implemented."""


def evaluate() -> None:
    """Not implemented yet."""
