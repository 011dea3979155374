"""Interpretability core: activations to HDF5, refusal directions, steering and ablation, geometry."""
