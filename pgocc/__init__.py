"""pgocc: PG-Occ open-vocabulary 3D occupancy in PyTorch + Triton."""

__version__ = "0.1.0"
