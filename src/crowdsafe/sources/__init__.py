"""Frame sources for offline counting: an image, a folder of images, a video file."""

from crowdsafe.sources.dispatch import frames, open_source
from crowdsafe.sources.frames import Frame, FrameSource, SkippedFrame, SourceError
from crowdsafe.sources.sampling import IntervalError, parse_interval

__all__ = ["Frame", "FrameSource", "IntervalError", "SkippedFrame", "SourceError", "frames",
           "open_source", "parse_interval"]
