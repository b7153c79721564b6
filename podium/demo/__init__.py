"""The demo study: tiny PyTorch token-classification models on a synthetic tagging task."""
