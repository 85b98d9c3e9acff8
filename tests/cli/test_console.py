"""What the commands print is what they mean: a frame range is not an emoji code."""

from __future__ import annotations

from crowdsafe.cli.console import stdout_console


def test_a_frame_range_prints_as_typed(capsys):
    stdout_console().print("annotated frames of 0:100:10")
    assert "0:100:10" in capsys.readouterr().out
