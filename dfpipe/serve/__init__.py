"""Stage 5, judging new videos (app.py calls :class:`dfpipe.serve.analyzer.Analyzer`,
:func:`dfpipe.serve.batch.predict_videos` and :func:`dfpipe.serve.web.create_app`).

Owns frames read within limits (``frames``), the analyzer that turns one video into a verdict
with the same crop and scoring as evaluate (``analyzer``), batch prediction over a folder
(``batch``), Grad-CAM heatmaps (``gradcam``) and the web app (``serve.web``)."""
