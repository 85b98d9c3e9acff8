"""Site geometry: camera→ground homographies, m² per density cell, zone masks, overlap ownership."""

from crowdsafe.geometry.ground_map import GroundMap, build_ground_map
from crowdsafe.geometry.homography import CalibrationError, HomographyFit, fit_homography
from crowdsafe.geometry.site import CameraGeometry, SiteGeometry, ZoneGeometry, build_site_geometry

__all__ = ["CalibrationError", "CameraGeometry", "GroundMap", "HomographyFit", "SiteGeometry", "ZoneGeometry",
           "build_ground_map", "build_site_geometry", "fit_homography"]
