"""Placeholder until implemented."""


def demo() -> None:
    """Not implemented yet."""
