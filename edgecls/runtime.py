"""`edgecls.runtime.Classifier`, the embeddable API, kept at its published name (it lives in
edgecls/runtimes/classifier.py)."""

from .runtimes.classifier import Classifier, Predictions

__all__ = ["Classifier", "Predictions"]
