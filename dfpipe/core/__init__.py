"""Shared by every stage, importing nothing else of dfpipe: the one-line errors
(``errors``), class order real=0 / fake=1 (``labels``), image decoding (``images``), atomic
writes (``atomic``), and the files stages hand each other: their names (``files``), the
manifest (``manifest``), the split table and report (``splittable``) and the training log
(``traininglog``)."""
