"""The ``crowdsafe`` command line: thin wiring over the stage packages."""
