"""The site file: cameras, calibration, zones and lines in metres, safety profiles (YAML → pydantic)."""
