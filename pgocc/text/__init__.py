"""Text encoders for open-vocabulary queries (docs/model.md §6.4): one interface, ``encode(prompts) -> [K, D]``."""

from pgocc.text.encoders import (
    HashEncoder,
    MiniLMEncoder,
    PrototypeEncoder,
    TextEncoder,
    save_prototypes,
    text_encoder,
)
from pgocc.text.prompts import OCC3D_GROUP_LABELS, OCC3D_PROMPT_GROUP, OCC3D_PROMPT_GROUPS, OCC3D_PROMPTS

__all__ = [
    "OCC3D_GROUP_LABELS",
    "OCC3D_PROMPTS",
    "OCC3D_PROMPT_GROUP",
    "OCC3D_PROMPT_GROUPS",
    "HashEncoder",
    "MiniLMEncoder",
    "PrototypeEncoder",
    "TextEncoder",
    "save_prototypes",
    "text_encoder",
]
