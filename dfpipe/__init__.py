"""dfpipe: a leak-free, resumable deepfake video detection pipeline on Keras 3."""

__version__ = "0.1.0"
