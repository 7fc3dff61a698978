"""Activity scripts: what a synthetic subject does, when and where (the truth behind narrations).

A script is a list of `Activity` covering ``[0, seconds)`` without gaps; times are seconds since
the start of the Xsens recording. Walks carry their path (a smooth curve through a waypoint,
sampled by arc length); every other activity happens in place.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np
from scipy.interpolate import CubicSpline

from egotwin_bench.synthetic.scene import PATH_CLEARANCE, Scene

KINDS: tuple[str, ...] = ("look_around", "turn", "walk", "reach", "pick", "crouch_pick", "open_door", "look_down")
HAND_ACTIONS: tuple[str, ...] = ("reach", "pick", "crouch_pick", "open_door")
"""The one-handed interactions, done at a scene's stations (`scene.Station.action`)."""
ACTION_SECONDS: dict[str, tuple[float, float]] = {
    "reach": (3.0, 4.0), "pick": (3.5, 4.5), "crouch_pick": (4.5, 5.5), "open_door": (3.5, 4.5),
}
"""Duration range (seconds) of each hand interaction."""
COVERAGE_SECONDS: float = 20.0
"""A script at least this long holds a look down and at least one hand interaction."""


@dataclass
class Activity:
    """One scripted activity."""

    kind: str
    t0: float
    """Start, seconds since the recording start."""
    t1: float
    """End (exclusive), seconds."""
    position: tuple[float, float]
    """Pelvis x, y (metres) at the start."""
    yaw0: float
    """Heading at the start, radians about +Z."""
    yaw1: float
    """Heading at the end."""
    hand: str | None = None
    """"left" or "right" for one-handed actions."""
    target: str | None = None
    """Name of the object acted on or walked to, e.g. "the red cup"."""
    target_height: float = 0.0
    """Height of the target above the floor, metres."""
    path: np.ndarray | None = field(default=None, repr=False)
    """Walks: (M, 2) pelvis x, y sampled uniformly in arc length."""

    @property
    def duration(self) -> float:
        return self.t1 - self.t0

    def to_json(self) -> dict:
        d = asdict(self)
        d.pop("path")
        d["path_length_m"] = float(path_length(self.path)) if self.path is not None else 0.0
        return d


def wrap_angle(a: float) -> float:
    return float((a + np.pi) % (2 * np.pi) - np.pi)


def path_length(path: np.ndarray) -> float:
    return float(np.linalg.norm(np.diff(path, axis=0), axis=1).sum())


def plan_path(start: np.ndarray, yaw0: float, end: np.ndarray, yaw1: float, via: np.ndarray | None,
              lo: np.ndarray, hi: np.ndarray, samples: int = 400) -> np.ndarray:
    """(samples, 2) smooth path from `start` (heading yaw0) to `end` (heading yaw1), uniform in arc length."""
    pts = [start] + ([via] if via is not None else []) + [end]
    pts = np.asarray(pts, dtype=np.float64)
    chord = np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(pts, axis=0), axis=1))])
    total = max(chord[-1], 1e-6)
    d0 = np.array([np.cos(yaw0), np.sin(yaw0)]) * total * 0.6
    d1 = np.array([np.cos(yaw1), np.sin(yaw1)]) * total * 0.6
    spline = CubicSpline(chord / total, pts, bc_type=((1, d0), (1, d1)))
    dense = np.clip(spline(np.linspace(0.0, 1.0, 4 * samples)), lo, hi)
    arc = np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(dense, axis=0), axis=1))])
    s = np.linspace(0.0, arc[-1], samples)
    return np.stack([np.interp(s, arc, dense[:, 0]), np.interp(s, arc, dense[:, 1])], axis=1)


def make_script(scene: Scene, seconds: float, rng: np.random.Generator) -> list[Activity]:
    """Fill `seconds` with activities: look around and down, then walk to stations and act there.

    Coverage (so hands appear in view often, for hand-presence labels): the opening is a look
    around and a look down (random order, 5-6 s); the first station is the nearest one, so the
    first hand interaction is over within ~16 s (measured on 200 sequences); later stations cycle through the scene's action
    kinds (`HAND_ACTIONS`) in a random order, each kind once before any repeats; the acting hand
    alternates (the first one random). After each interaction the subject looks down (40 %),
    looks around (20 %) or moves on. A script of >= `COVERAGE_SECONDS` thus always holds a look
    down and at least one hand interaction. Deterministic for the state of `rng`.
    """
    lo = scene.room_lo[:2] + PATH_CLEARANCE
    hi = scene.room_hi[:2] - PATH_CLEARANCE
    pos = rng.uniform(scene.walk_lo, scene.walk_hi)
    yaw = float(rng.uniform(-np.pi, np.pi))
    t = 0.0
    acts: list[Activity] = []

    def add(kind: str, duration: float, yaw1: float | None = None, **kw) -> None:
        nonlocal t, yaw
        y1 = yaw if yaw1 is None else yaw1
        acts.append(Activity(kind, t, t + duration, (float(pos[0]), float(pos[1])), yaw, y1, **kw))
        t += duration
        yaw = y1

    opening = ["look_around", "look_down"]
    for kind in (opening if rng.random() < 0.5 else opening[::-1]):
        add(kind, float(rng.uniform(2.5, 3.0)))
    kinds = sorted({st.action for st in scene.stations})
    todo: list[str] = []
    hand = str(rng.choice(["left", "right"]))
    last = -1
    while t < seconds:
        if not todo:
            todo = [str(k) for k in rng.permutation(kinds)]
        if last < 0:  # the nearest station first
            last = int(np.argmin([np.linalg.norm(st.position - pos) for st in scene.stations]))
        else:
            others = [i for i in range(len(scene.stations)) if i != last] or [last]
            choices = [i for i in others if scene.stations[i].action == todo[0]] or others
            last = int(rng.choice(choices))
        station = scene.stations[last]
        if station.action in todo:
            todo.remove(station.action)
        target = scene.boxes[station.target].name
        dist = float(np.linalg.norm(station.position - pos))
        via = None
        if dist > 1.8:
            mid = 0.5 * (pos + station.position)
            via = np.clip(mid + rng.normal(0.0, 0.6, 2), scene.walk_lo, scene.walk_hi)
        first = via if via is not None else station.position
        heading = float(np.arctan2(first[1] - pos[1], first[0] - pos[0]))
        delta = wrap_angle(heading - yaw)
        if abs(delta) > np.deg2rad(45):
            add("turn", 0.9 + 0.7 * abs(delta) / (np.pi / 2), yaw + delta)
        if dist > 0.3:
            path = plan_path(pos, yaw, station.position, station.yaw, via, lo, hi)
            speed = float(rng.uniform(0.95, 1.25))
            add("walk", path_length(path) / speed + 0.8, station.yaw, target=target, path=path)
            pos = station.position.copy()
        else:
            add("turn", 1.2, yaw + wrap_angle(station.yaw - yaw))
        a, b = ACTION_SECONDS[station.action]
        add(station.action, float(rng.uniform(a, b)), hand=hand, target=target, target_height=station.height)
        hand = "left" if hand == "right" else "right"
        r = rng.random()
        if r < 0.4:
            add("look_down", float(rng.uniform(2.5, 3.5)))
        elif r < 0.6:
            add("look_around", float(rng.uniform(2.5, 3.5)))
    acts[-1].t1 = max(acts[-1].t1, seconds)
    return [a for a in acts if a.t0 < seconds]
