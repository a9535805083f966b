"""What a model is, apart from how it is trained: the backbone registry with each
backbone's input size, pixel scaling and training defaults (``registry``), the classifier
built around it with resizing and scaling inside (``build``), ImageNet weights (``imagenet``),
and saving and loading a model with its metadata (``saving``). train.py, evaluate.py and
the app all build or load models through here."""
