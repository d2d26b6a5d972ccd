"""lipaudit: spectral-norm bounds for convolution layers and Lipschitz certificates for CNNs."""

__version__ = "0.1.0"
