"""Training: datasets, child networks, the training loop and top-k ensembles."""
