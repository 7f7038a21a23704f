"""difflab: diffusion models from the papers in one small PyTorch core."""
__version__ = "0.1.0"
