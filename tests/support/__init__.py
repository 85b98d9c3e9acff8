"""Helpers shared by the tests: site and store builders, real servers, reference code.

Test modules import shared code only from here (never from another test module or conftest),
so any test file can move or be run alone.
"""
