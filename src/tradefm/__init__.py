"""tradefm: foundation models of market order flow."""

__version__ = "0.1.0"
