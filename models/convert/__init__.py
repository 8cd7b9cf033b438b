"""Conversions from the formats models ship in to the formats vx runs."""
