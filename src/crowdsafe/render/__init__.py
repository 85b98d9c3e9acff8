"""Pictures of density: heatmap overlays, written only when the user asks for them."""

from crowdsafe.render.heatmap import render_heatmap, write_image
from crowdsafe.render.writer import HeatmapWriter

__all__ = ["HeatmapWriter", "render_heatmap", "write_image"]
