"""Live progress of long runs (monitor.py calls :func:`dfpipe.monitor.watch.watch`),
read only from the files the stages write: manifest progress (``progress``), snapshots of a
folder (``snapshot``), reading growing manifests (``tail``), text and rich views (``render``)
and the polling loop (``watch``)."""
