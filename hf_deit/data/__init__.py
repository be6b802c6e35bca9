"""Data: datasets, robust image decoding, transforms and augmentation, samplers, device-resident sets."""
