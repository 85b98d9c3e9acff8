"""The live dashboard's static files (HTML, JS, CSS), served by ``crowdsafe.api.pages``."""
