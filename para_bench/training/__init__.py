"""Demo collection, datasets and the training loop of the learned policies."""
