"""The ego's motion along the street: a speed profile (cruise, sometimes a stop) integrated to an arc length, and a
lateral wiggle around its lane (so it turns a little, which gives the temporal frames real parallax)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from pgocc.synthetic.params import EgoParams


@dataclass(slots=True)
class EgoPath:
    """The ego's path in the street frame as a function of the time since the scene's first keyframe."""

    times: np.ndarray
    """[P] seconds at which the arc length is tabulated."""
    arc_length: np.ndarray
    """[P] metres driven along the street."""
    lane: float
    wiggle: tuple[float, float, float]
    """(amplitude m, wavelength m, phase rad) of the lateral motion."""

    def street_pose(self, t: float) -> tuple[float, float, float]:
        """(a, b, heading relative to the street) of the ego ``t`` seconds after the first keyframe."""
        s = float(np.interp(t, self.times, self.arc_length))
        amp, wavelength, phase = self.wiggle
        w = 2.0 * math.pi / wavelength
        b = self.lane + amp * math.sin(w * s + phase)
        slope = amp * w * math.cos(w * s + phase)
        return s, b, math.atan(slope)


def draw_arc_length(rng: np.random.Generator, duration: float, p: EgoParams) -> tuple[np.ndarray, np.ndarray]:
    """Times [P] (``p.path_step`` apart, covering ``duration`` seconds) and the arc length [P] driven by then."""
    times = np.arange(0.0, duration + 1e-9, p.path_step)  # + 1e-9: the end itself despite rounding
    cruise = rng.uniform(*p.cruise_speed)
    speed = np.full_like(times, cruise)
    if rng.random() < p.stop_probability and duration > p.min_duration_to_stop:
        t_stop, hold = rng.uniform(p.stop_after, duration - p.stop_before_end), rng.uniform(*p.stop_hold)
        ramp = cruise / p.deceleration
        speed = np.minimum(speed, np.clip(np.maximum(t_stop - times, times - t_stop - hold) / ramp, 0, 1) * cruise)
    arc_length = np.concatenate([[0.0], np.cumsum(0.5 * (speed[1:] + speed[:-1]) * np.diff(times))])
    return times, arc_length


def draw_wiggle(rng: np.random.Generator, p: EgoParams) -> tuple[float, float, float]:
    """(amplitude, wavelength, phase) of the ego's lateral motion."""
    return rng.uniform(*p.wiggle_amplitude), rng.uniform(*p.wiggle_wavelength), rng.uniform(0, 2 * np.pi)
