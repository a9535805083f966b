"""Stage 1, faces from videos (preprocess.py calls :func:`dfpipe.extract.run.run`).

Owns which files may reach FFmpeg (``sniff``), which frames are read and how (``video``), the
face detectors, the square crop and five keypoints (``faces``), who appears in a video
(``identities``: union-find over names, DFDC metadata and labels CSVs), the benchmarks'
layouts as they unpack (``layouts``), the published protocols' settings (``presets``) and the
resumable,
parallel, shardable run that writes crops and manifest lines (``run``)."""
