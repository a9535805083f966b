"""How crops become a verdict, shared by training, evaluate and the app: crop scores
P(fake) (``crops``: :func:`dfpipe.scoring.crops.score_crops` and the per-video rules), the
operating point chosen on validation and read back from the metadata (``operating``), and
the per-video verdict (``verdict``)."""
