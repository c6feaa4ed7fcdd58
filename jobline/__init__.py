"""jobline: submit slow work over HTTP, get an id at once, come back for the result."""

__version__ = "0.1.0"
