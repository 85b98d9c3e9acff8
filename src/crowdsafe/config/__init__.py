"""The site file: cameras, calibration, zones and lines in metres, safety profiles (YAML → pydantic)."""

from crowdsafe.config.site import (
    Calibration,
    Camera,
    Exit,
    Line,
    Sampling,
    Site,
    SiteError,
    Zone,
    load_site,
    parse_site,
    site_json_schema,
)

__all__ = ["Calibration", "Camera", "Exit", "Line", "Sampling", "Site", "SiteError", "Zone", "load_site",
           "parse_site", "site_json_schema"]
