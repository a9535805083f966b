"""Stage 2, the split by video and identity (split.py calls
:func:`dfpipe.split.run.run_split`).

Owns the quality filter (``quality``), the two inputs: manifests (``manifest_input``) and a
folder of crops with a labels CSV (``folder_input``), the seeded group assignment and
official protocols (``assign``), the datasets' own test lists (``protocols``), the refusal of
a collapsed grouping and target-only grouping (``grouping``), the leak and count checks
(``checks``) and writing the split folder, table and report (``write``)."""
