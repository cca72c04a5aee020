"""Datasets and input preprocessing: Fashion-MNIST, ImageFolder trees, ImageNet normalization."""
