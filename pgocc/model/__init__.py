"""The PG-Occ network, its losses and its readout (see design.md beside this file).

Hot paths are resolved once per module through :func:`pgocc.ops.resolve`; nothing here imports ``reference`` or
``kernels_triton`` directly.
"""

from pgocc.model.criterion import LossOutput, PGOccLoss
from pgocc.model.feature_cache import FeatureCache
from pgocc.model.pgocc import PGOcc
from pgocc.model.readout import Readout
from pgocc.model.types import Gaussians, Prediction

__all__ = ["FeatureCache", "Gaussians", "LossOutput", "PGOcc", "PGOccLoss", "Prediction", "Readout"]
