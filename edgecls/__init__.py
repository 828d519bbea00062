"""edgecls: train small image classifiers and ship them to edge devices."""

__version__ = "0.1.0"
