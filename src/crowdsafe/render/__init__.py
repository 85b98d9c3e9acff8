"""Pictures of density: heatmap overlays, written only when the user asks for them."""
