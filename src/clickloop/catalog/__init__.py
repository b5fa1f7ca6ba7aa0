"""Template catalog of traffic sources and affiliate networks, shipped as data."""
