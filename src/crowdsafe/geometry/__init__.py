"""Site geometry: camera→ground homographies, m² per density cell, zone masks, overlap ownership, lines."""
