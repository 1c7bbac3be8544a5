"""The version of pdconnect."""

__version__ = "0.1.0"
