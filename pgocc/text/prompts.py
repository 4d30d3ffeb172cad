"""The Occ3D open-vocabulary prompt groups of docs/model.md §6.1, as data.

21 prompt columns in 16 groups; a group's score is the max over its prompts, and group g maps to the Occ3D label
``OCC3D_GROUP_LABELS[g]`` (labels 0 ``others`` and 12 ``other_flat`` are never predicted; ``sky`` stands for 17
``free``).
"""

from __future__ import annotations

OCC3D_PROMPT_GROUPS: tuple[tuple[str, ...], ...] = (
    ("barrier",),
    ("bicycle",),
    ("bus",),
    ("car",),
    ("construction vehicle",),
    ("motorcycle",),
    ("person",),
    ("cone",),
    ("trailer",),
    ("truck",),
    ("road",),
    ("sidewalk",),
    ("terrain", "grass"),
    ("building", "wall", "fence", "pole", "sign"),
    ("vegetation",),
    ("sky",),
)
"""[16] groups of prompts, in the merged-class order of §6.1."""

OCC3D_GROUP_LABELS: tuple[int, ...] = (1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 14, 15, 16, 17)
"""[16] Occ3D label of each group (``idx + 1 + (idx > 10)``)."""

OCC3D_PROMPTS: tuple[str, ...] = tuple(p for group in OCC3D_PROMPT_GROUPS for p in group)
"""[21] the flattened prompt columns (the column order of a CLIP ``text_proto_embeds`` [512, 21] file)."""

OCC3D_PROMPT_GROUP: tuple[int, ...] = tuple(g for g, group in enumerate(OCC3D_PROMPT_GROUPS) for _ in group)
"""[21] group index of each prompt column."""
