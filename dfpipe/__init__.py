"""dfpipe: a leak-free, resumable deepfake video detection pipeline on Keras 3."""

import os

# retina-face builds its network with tf.keras and needs the Keras 2 implementation
# (tf-keras) behind it; tf.keras is bound once, at first use, from this variable. Our own
# models use Keras 3 through ``import keras``, which this setting does not touch.
os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

__version__ = "0.1.0"
