"""Stage 4, held-out metrics (evaluate.py calls :func:`dfpipe.evaluate.run.evaluate`).

Owns crop- and video-level metrics with bootstrap intervals (``metrics``), coverage of the
videos that yielded no crop (``coverage``), the figures (``figures``) and the written report
(``report``), per-method tables (``tables``), unsplit datasets' test lists (``unsplit``) and the
cross-dataset table (``crossdata``); ``run`` scores a split with the model's own operating
point."""
