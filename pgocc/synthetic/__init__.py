"""The procedural street world behind ``pgocc make-synthetic``, and its writer as a nuScenes-format dataset.

Modules, in the order a scene is drawn (docs/data.md §5):

- ``params``: :class:`SceneParams`, every number of the random draws;
- ``kinds``: the kinds of surface and object (Occ3D label, prompt, nuScenes category, colour, typical size);
- ``ego``: the ego's speed profile and lateral wiggle;
- ``layout``: the street (road, sidewalks, terrain, crossings) and the street ↔ global frame;
- ``objects``: buildings, vegetation, poles, construction zones, parked vehicles, pedestrians, oncoming traffic;
- ``rig``: the cameras' and LiDAR's placement, timing and per-scene calibration;
- ``texture``: the value-noise texture;
- ``scene``: :class:`Scene` (poses of everything at any time) and ``make_scene(seed, index, …)``;
- ``raycast``, ``render``, ``labels``: rays against the scene, camera images, Occ3D labels and masks;
- ``writer``: ``make_synthetic(out, WorldSpec, layout=…)``, the dataset on disk.

The loader (``pgocc.data``) never imports this package: it reads the world like any nuScenes dataset. Everything but
the writer's text encoder is numpy only, so the writer's worker processes do not import torch.
"""
