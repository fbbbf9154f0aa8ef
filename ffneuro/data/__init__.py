"""Datasets (embedded digits, MNIST/Fashion-MNIST IDX, CIFAR-10 binary, npz files, image folders), the input checks they share, and training-time augmentation."""
