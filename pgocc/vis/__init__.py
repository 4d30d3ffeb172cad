"""Pictures (matplotlib, Agg canvas, no pyplot state): bird's-eye occupancy views, per-query heat maps, camera images
beside rendered depth. Each function takes numpy arrays and writes one PNG atomically."""

from pgocc.vis.bev import bev_picture, query_picture, top_labels
from pgocc.vis.cameras import camera_picture
from pgocc.vis.palette import OCC3D_COLORS

__all__ = ["OCC3D_COLORS", "bev_picture", "camera_picture", "query_picture", "top_labels"]
