"""Self-blended fakes for training (``train.py --sbi``): the blend itself (``blend``),
five keypoints per crop, found once and cached (``landmarks``), the paired real/fake epochs
(``inputs``) and a picture of examples (``grid``: ``python -m dfpipe.train.sbi.grid``)."""
