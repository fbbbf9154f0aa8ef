"""Datasets (embedded digits, MNIST, CIFAR-10, npz/csv files) and training-time augmentation."""
