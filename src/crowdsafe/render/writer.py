"""Writing heatmaps of counted frames into a folder the user named, one file per frame.

Only constructed when the user passes ``--heatmaps DIR``: these files contain real frames.
"""

from __future__ import annotations

from pathlib import Path

from crowdsafe.counting.counter import DensityResult
from crowdsafe.render.heatmap import render_heatmap, write_image
from crowdsafe.sources.frames import Frame


class HeatmapWriter:
    """Frame callback for ``run_count``: renders and writes each counted frame's heatmap.

    Names keep the link to the input: ``<video>_<frame index>.jpg`` for video frames,
    ``<image>_heatmap.jpg`` for images, with the index added if two images share a stem.
    """

    def __init__(self, directory: Path, suffix: str = ".jpg",
                 scale_max: float | None = None) -> None:
        if directory.exists() and not directory.is_dir():
            raise OSError(f"{directory}: exists and is not a folder")
        directory.mkdir(parents=True, exist_ok=True)
        self.directory = directory
        self.suffix = suffix
        self.scale_max = scale_max
        self.written: list[Path] = []

    def name_for(self, frame: Frame) -> Path:
        stem = Path(frame.source).stem
        if frame.timestamp is not None:
            name = f"{stem}_{frame.index:06d}{self.suffix}"
        else:
            name = f"{stem}_heatmap{self.suffix}"
            if self.directory / name in self.written:
                name = f"{stem}_{frame.index:06d}_heatmap{self.suffix}"
        return self.directory / name

    def __call__(self, frame: Frame, result: DensityResult) -> None:
        path = self.name_for(frame)
        write_image(path, render_heatmap(frame.image, result, scale_max=self.scale_max))
        self.written.append(path)
