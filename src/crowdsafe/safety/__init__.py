"""Safety rules: Level-of-Service and risk profiles, alert rules with hysteresis, staffing policy."""
