"""Synthetic subjects and their motion: activity scripts -> 23-segment Xsens skeleton poses.

Motion is defined on a master clock of `MASTER_HZ` samples per second (a common multiple of the
Xsens rate 240 Hz, the MPS rate 1 kHz and the RGB rates), so every stream samples the same
continuous motion exactly: Xsens frame k is master sample 25 k, MPS pose j is 6 j, RGB frame i at
10 FPS is 600 i. Channels (root path, heading, gait phase, crouch, head yaw/pitch, arm reaches) are
computed on the master grid; joint rotations and forward kinematics only at requested samples.

Rotations are composed in the parent frame, angles in radians; `skeleton.forward_kinematics`
turns local rotations + scaled template bone offsets into world positions/rotations (Z up).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.spatial.transform import Rotation

from egotwin_bench.constants import XSENS_FPS
from egotwin_bench.skeleton import (
    DEFAULT_OFFSETS,
    DEFAULT_PELVIS_HEIGHT,
    INDEX,
    NUM_SEGMENTS,
    PELVIS,
    forward_kinematics,
)
from egotwin_bench.synthetic.script import Activity

MASTER_HZ: int = 6000
"""Master clock rate: lcm of 240 (Xsens) and 1000 (MPS); RGB rates that divide it are exact."""
assert MASTER_HZ % XSENS_FPS == 0 and MASTER_HZ % 1000 == 0

_ARM_SEGMENTS = {"right": ("RightShoulder", "RightUpperArm", "RightForeArm", "RightHand"),
                 "left": ("LeftShoulder", "LeftUpperArm", "LeftForeArm", "LeftHand")}
_LEG_SEGMENTS = {"right": ("RightUpperLeg", "RightLowerLeg", "RightFoot", "RightToe"),
                 "left": ("LeftUpperLeg", "LeftLowerLeg", "LeftFoot", "LeftToe")}
_ARM_BONES = [INDEX[n] for side in _ARM_SEGMENTS.values() for n in side[1:]] + [INDEX["LeftHand"], INDEX["RightHand"]]
_LEG_BONES = [INDEX[n] for side in _LEG_SEGMENTS.values() for n in side[1:]]


@dataclass(frozen=True)
class Subject:
    """A body: id, height and bone offsets (23, 3) metres (template scaled, limbs jittered)."""

    subject_id: str
    height_m: float
    offsets: np.ndarray
    pelvis_height: float
    """Pelvis above the floor when standing, metres."""

    @property
    def thigh(self) -> float:
        return float(np.linalg.norm(self.offsets[INDEX["RightLowerLeg"]]))

    @property
    def shank(self) -> float:
        return float(np.linalg.norm(self.offsets[INDEX["RightFoot"]]))


def make_subject(subject_index: int, seed: int) -> Subject:
    """A deterministic subject for `subject_index`: height 1.55-1.95 m, arm/leg ratios +-6 %."""
    rng = np.random.default_rng([seed, 15485863, subject_index])
    height = float(rng.uniform(1.55, 1.95))
    scale = height / 1.75
    offsets = DEFAULT_OFFSETS * scale
    arm, leg = rng.uniform(0.94, 1.06, 2)
    offsets[_ARM_BONES] *= arm
    offsets[_LEG_BONES] *= leg
    # Shoulder width and hip width vary too.
    offsets[[INDEX["RightUpperArm"], INDEX["LeftUpperArm"]]] *= rng.uniform(0.9, 1.1)
    return Subject(f"subj{subject_index:02d}", height, offsets, DEFAULT_PELVIS_HEIGHT * scale * leg)


def _smoothstep(x: np.ndarray) -> np.ndarray:
    x = np.clip(x, 0.0, 1.0)
    return x * x * x * (x * (6 * x - 15) + 10)


def _envelope(t: np.ndarray, t0: float, t1: float, rise: float, fall: float | None = None) -> np.ndarray:
    """0 -> 1 over `rise` seconds after t0, 1 -> 0 over `fall` seconds before t1 (smootherstep)."""
    fall = rise if fall is None else fall
    return _smoothstep((t - t0) / rise) * _smoothstep((t1 - t) / fall)


def _rot(axis: str, angle: np.ndarray) -> np.ndarray:
    """(n,) angles -> (n, 3, 3) rotations about the x, y or z axis."""
    vec = np.zeros((np.size(angle), 3))
    vec[:, "xyz".index(axis)] = np.ravel(angle)
    return Rotation.from_rotvec(vec).as_matrix()


def _blend(Ra: np.ndarray, Rb: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Geodesic interpolation Ra exp(w log(Ra^T Rb)) for (n, 3, 3) rotations and (n,) weights."""
    rel = Rotation.from_matrix(np.swapaxes(Ra, -1, -2) @ Rb).as_rotvec()
    return Ra @ Rotation.from_rotvec(rel * w[:, None]).as_matrix()


@dataclass
class Channels:
    """Per-master-sample control signals (arrays of length n)."""

    xy: np.ndarray
    yaw: np.ndarray
    gait: np.ndarray
    phase: np.ndarray
    crouch: np.ndarray
    lean: np.ndarray
    head_yaw: np.ndarray
    head_pitch: np.ndarray
    reach: dict[str, np.ndarray]
    elevation: dict[str, np.ndarray]
    elbow: dict[str, np.ndarray]


STRIDE_M: float = 1.35
"""Distance covered by one full gait cycle (two steps)."""
CROUCH_DROP: float = 0.42
"""How far the pelvis drops in a full crouch, as a fraction of the standing pelvis height."""


def compute_channels(script: list[Activity], seconds: float) -> Channels:
    """Control signals on the master grid ``t = i / MASTER_HZ`` for i in [0, seconds * MASTER_HZ]."""
    n = int(round(seconds * MASTER_HZ)) + 1
    t = np.arange(n) / MASTER_HZ
    xy = np.zeros((n, 2))
    yaw = np.zeros(n)
    gait = np.zeros(n)
    dist = np.zeros(n)
    ch = {k: np.zeros(n) for k in ("crouch", "lean", "head_yaw", "head_pitch")}
    reach = {"left": np.zeros(n), "right": np.zeros(n)}
    elevation = {"left": np.full(n, -0.6), "right": np.full(n, -0.6)}
    elbow = {"left": np.full(n, 0.3), "right": np.full(n, 0.3)}
    for act in script:
        i0 = int(round(act.t0 * MASTER_HZ))
        i1 = min(int(round(act.t1 * MASTER_HZ)), n) if act is not script[-1] else n
        if i0 >= n:
            break
        sl = slice(i0, i1)
        ts = t[sl]
        u = (ts - act.t0) / act.duration
        xy[sl] = act.position
        yaw[sl] = act.yaw0
        if act.kind == "walk":
            # Speed: smooth ramp up/down over 0.6 s; position by arc length along the path.
            env = _envelope(ts, act.t0, act.t1, 0.6)
            s = np.cumsum(env)
            s = s / s[-1] if act.t1 * MASTER_HZ <= n else s / np.sum(_envelope(np.arange(i0, int(round(act.t1 * MASTER_HZ))) / MASTER_HZ, act.t0, act.t1, 0.6))
            path = act.path
            seg = np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(path, axis=0), axis=1))])
            arc = s * seg[-1]
            xy[sl, 0] = np.interp(arc, seg, path[:, 0])
            xy[sl, 1] = np.interp(arc, seg, path[:, 1])
            tangent = np.gradient(path, axis=0)
            heading = np.unwrap(np.arctan2(tangent[:, 1], tangent[:, 0]))
            heading += act.yaw0 - heading[0]
            yaw[sl] = np.interp(arc, seg, heading)
            gait[sl] = env
            dist[sl] = arc
            ch["head_pitch"][sl] = 0.12 * env
            ch["head_yaw"][sl] = 0.5 * np.gradient(yaw[sl]) * MASTER_HZ * 0.4 * env
        elif act.kind == "turn":
            yaw[sl] = act.yaw0 + (act.yaw1 - act.yaw0) * _smoothstep(u)
            gait[sl] = 0.35 * np.sin(np.pi * u)
            ch["head_yaw"][sl] = 0.25 * np.sign(act.yaw1 - act.yaw0) * np.sin(np.pi * u)
        elif act.kind == "look_around":
            env = _envelope(ts, act.t0, act.t1, 0.5)
            looks = max(1, int(act.duration // 2.5))
            ch["head_yaw"][sl] = 0.85 * np.sin(2 * np.pi * looks * u) * env
            ch["head_pitch"][sl] = 0.15 * np.sin(np.pi * u) * env
        elif act.kind == "look_down":
            env = _envelope(ts, act.t0, act.t1, 0.7)
            ch["head_pitch"][sl] = 0.85 * env
            for side in ("left", "right"):
                reach[side][sl] = 0.85 * env
                elevation[side][sl] = -1.0
                elbow[side][sl] = 1.5
        else:  # reach, pick, crouch_pick, open_door: one hand to the target
            side = act.hand or "right"
            rise = min(1.1, act.duration / 3)
            env = _envelope(ts, act.t0, act.t1, rise)
            arm = _envelope(ts, act.t0 + 0.3, act.t1 - 0.2, rise * 0.9)
            reach[side][sl] = arm
            if act.kind == "reach":
                elevation[side][sl] = np.clip((act.target_height - 1.35) * 1.2, -0.5, 0.4)
                elbow[side][sl] = 0.25
                ch["head_pitch"][sl] = 0.25 * env
            elif act.kind == "pick":
                ch["crouch"][sl] = 0.2 * env
                ch["lean"][sl] = 0.45 * env
                elevation[side][sl] = -0.75
                elbow[side][sl] = 0.35
                ch["head_pitch"][sl] = 0.7 * env
            elif act.kind == "crouch_pick":
                ch["crouch"][sl] = env
                ch["lean"][sl] = 0.35 * env
                elevation[side][sl] = -0.9
                elbow[side][sl] = 0.3
                ch["head_pitch"][sl] = 0.95 * env  # eyes on the low target: the hand comes into view
            else:  # open_door: reach the handle, pull back twice
                elevation[side][sl] = -0.55
                elbow[side][sl] = 0.45 + 0.5 * np.clip(np.sin(2 * np.pi * 1.2 * u), 0, None) * arm
                ch["head_pitch"][sl] = 0.3 * env
                ch["lean"][sl] = 0.08 * env
            ch["head_yaw"][sl] += (0.15 if side == "left" else -0.15) * env
    dyaw = np.abs(np.diff(yaw, prepend=yaw[0]))
    phase = 2 * np.pi * np.cumsum(np.abs(np.diff(dist, prepend=dist[0])) * (dist > 0) + dyaw * 0.35) / STRIDE_M
    return Channels(xy, yaw, gait, phase, ch["crouch"], ch["lean"], ch["head_yaw"], ch["head_pitch"],
                    reach, elevation, elbow)


def pose_at(subject: Subject, c: Channels, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """World segment positions (n, 23, 3) metres and rotations (n, 23, 3, 3) at master samples `idx`."""
    idx = np.asarray(idx, dtype=np.int64)
    n = idx.size
    g, ph = c.gait[idx], c.phase[idx]
    crouch, lean = c.crouch[idx], c.lean[idx]
    yaw = c.yaw[idx]
    local = np.tile(np.eye(3), (n, NUM_SEGMENTS, 1, 1))

    # Legs: crouch by two-bone IK (feet under the hips, flat), plus the walking cycle.
    L1, L2 = subject.thigh, subject.shank
    drop = CROUCH_DROP * subject.pelvis_height * crouch
    d = np.clip(L1 + L2 - drop, abs(L1 - L2) + 1e-3, L1 + L2)
    alpha = np.arccos(np.clip((L1**2 + d**2 - L2**2) / (2 * L1 * d), -1, 1))
    gamma = np.arccos(np.clip((L2**2 + d**2 - L1**2) / (2 * L2 * d), -1, 1))
    pelvis_pitch = 0.35 * crouch + 0.5 * lean * 0.4
    for side, sign in (("right", 1.0), ("left", -1.0)):
        swing = sign * np.sin(ph)  # > 0: this leg in front
        hip = 0.38 * g * swing + alpha
        knee = 0.65 * g * np.clip(sign * np.cos(ph), 0, None) + alpha + gamma
        upper, lower, foot, _ = (INDEX[s] for s in _LEG_SEGMENTS[side])
        local[:, upper] = _rot("y", -hip - pelvis_pitch)
        local[:, lower] = _rot("y", knee)
        local[:, foot] = _rot("y", hip - knee)

    # Pelvis: heading, forward pitch, lateral sway; spine flexes forward and counter-rotates.
    local[:, PELVIS] = _rot("z", yaw) @ _rot("y", pelvis_pitch) @ _rot("x", 0.04 * g * np.sin(ph))
    spine_flex = 0.8 * lean
    for name in ("L5", "L3", "T12", "T8"):
        local[:, INDEX[name]] = _rot("y", spine_flex / 4)
    local[:, INDEX["T8"]] = _rot("z", -0.07 * g * np.sin(ph)) @ local[:, INDEX["T8"]]

    # Head: yaw and pitch (down > 0) relative to the world horizontal, split neck 40 % / head 60 %.
    pitch_rel = c.head_pitch[idx] - pelvis_pitch - spine_flex
    hy = c.head_yaw[idx]
    local[:, INDEX["Neck"]] = _rot("z", 0.4 * hy) @ _rot("y", 0.4 * pitch_rel)
    local[:, INDEX["Head"]] = _rot("z", 0.6 * hy) @ _rot("y", 0.6 * pitch_rel)

    # Arms: hanging and swinging, blended towards a forward reach at an elevation, elbow flexed.
    for side, sign in (("right", 1.0), ("left", -1.0)):
        _, upper, fore, _ = (INDEX[s] for s in _ARM_SEGMENTS[side])
        arm_fwd = 0.3 * g * (-sign) * np.sin(ph)  # opposite to the same-side leg
        rest = _rot("y", -arm_fwd) @ _rot("x", sign * np.full(n, 1.35))
        target = _rot("y", -c.elevation[side][idx]) @ _rot("z", sign * np.full(n, np.pi / 2 - 0.2))
        w = c.reach[side][idx]
        local[:, upper] = _blend(rest, target, w)
        local[:, fore] = _rot("z", sign * (0.25 + w * (c.elbow[side][idx] - 0.25)))

    root = np.zeros((n, 3))
    fwd = np.stack([np.cos(yaw), np.sin(yaw)], axis=1)
    root[:, :2] = c.xy[idx] - (0.12 * crouch)[:, None] * fwd
    root[:, 2] = subject.pelvis_height - drop - 0.015 * g * (1 - np.cos(2 * ph)) / 2
    return forward_kinematics(local, subject.offsets, root)
