"""The built-in sample dataset and ``make demo`` (:func:`dfpipe.sample.demo.main`): stock
photographs filmed with a moving camera (``camera``), forged by self-blending and face
swapping (``forging``), then every stage run on them (``demo``)."""
