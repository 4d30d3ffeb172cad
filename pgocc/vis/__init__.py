"""Pictures (matplotlib, Agg canvas, no pyplot state): bird's-eye and 3D occupancy views, per-query heat maps, camera
images beside foundation and rendered depth and rendered-feature PCA, training curves. Each function takes numpy
arrays and writes one PNG atomically."""

from pgocc.vis.bev import bev_picture, query_picture, top_labels
from pgocc.vis.cameras import camera_picture
from pgocc.vis.palette import OCC3D_COLORS
from pgocc.vis.voxels import voxel_picture

__all__ = ["OCC3D_COLORS", "bev_picture", "camera_picture", "query_picture", "top_labels", "voxel_picture"]
