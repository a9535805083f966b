"""Stage 3, fine-tuning a classifier (train.py calls :func:`dfpipe.train.loop.train`).

Owns the run's options and phases (``config``), the tf.data input with albumentations and
the per-video draw (``inputs``), precision and distribution (``devices``), resumable state
(``resume``), the Keras callbacks (``callbacks``), the epoch loop (``loop``), the saved
metadata (``metadata``), the training curves (``curves``), and self-blended fakes
(``train.sbi``)."""
