"""Image-dataset reduction through the shared ranking interface: data, nets, training, pruning, condensation."""
