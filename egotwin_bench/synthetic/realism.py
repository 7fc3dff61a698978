"""Nuisances of real captures for `make-synthetic --realism`, each with its exact ground truth.

| nuisance | what is written | ground truth (``synthetic_gt/realism.npz`` + sequence.json) |
|---|---|---|
| Xsens global drift | the whole Xsens body turned about Z by ``yaw(t)`` and shifted by ``d(t)``: a random walk with knots every `DRIFT_KNOT_S` s (cubic spline, starts at 0), scaled so that its largest horizontal excursion is ``drift_m`` and its largest heading excursion ``drift_deg``; vertical walk `DRIFT_VERTICAL` x as large | per Xsens frame ``xsens_error_yaw`` (rad) and ``xsens_error_trans`` (m): reported = ``Rz(yaw) · true + trans`` |
| unusable ends | the first and last `END_S` s: the Xsens filter settling (a further error fading from `END_XSENS_M` / `END_XSENS_DEG` to 0) and MPS initialising (`END_MPS_M` / `END_MPS_DEG`) | included in the Xsens error arrays; MPS: ``mps_error`` |
| MPS pose noise | device poses perturbed by smooth noise (knots at `MPS_NOISE_HZ`, linear): `MPS_NOISE_M` per axis, `MPS_NOISE_DEG` per axis | ``mps_error_rotvec`` / ``mps_error_trans`` per MPS sample: reported = true · exp(error) (device frame) |
| timestamp spikes | single Xsens samples stamped `SPIKE_MS` late (one per `SPIKE_EVERY_S`, at least 2) | ``spike_frames``; true stamps = the nominal 240 Hz grid |
| narration schema | CSVs in the released schema (``request_id, gaia_id, start_time, end_time, annotator, creation_time, <text>``), times as float seconds of the head device clock, UTF-8 with a BOM | the same windows as the clean preset (TIME_CODE ns in sequence.json ``script``) |

Defaults per sequence (drawn from a generator of its own, so that the clean content — scene,
script, narrations — is identical to the clean preset's): drift 0.3-1 m and 2-5° per 20 min,
scaled by sqrt(length / 20 min) (a random walk); ``drift_m`` / ``drift_deg`` override them with
the excursion over the whole sequence.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.interpolate import CubicSpline
from scipy.spatial.transform import Rotation

DRIFT_KNOT_S: float = 10.0
DRIFT_VERTICAL: float = 0.05
DRIFT_PER_20MIN_M: tuple[float, float] = (0.3, 1.0)
DRIFT_PER_20MIN_DEG: tuple[float, float] = (2.0, 5.0)
END_S: float = 1.0
END_XSENS_M: float = 0.15
END_XSENS_DEG: float = 6.0
END_MPS_M: float = 0.08
END_MPS_DEG: float = 3.0
MPS_NOISE_HZ: float = 20.0
MPS_NOISE_M: float = 0.0015
MPS_NOISE_DEG: float = 0.15
SPIKE_MS: float = 50.0
SPIKE_EVERY_S: float = 60.0
NARRATION_HEADER: tuple[str, ...] = ("request_id", "gaia_id", "start_time", "end_time", "annotator", "creation_time")
"""The columns before the text columns in the released narration CSVs."""
GT_FILE = "synthetic_gt/realism.npz"


@dataclass(frozen=True)
class RealismSpec:
    """The nuisance sizes of one sequence (recorded in sequence.json ``realism``)."""

    drift_m: float
    drift_deg: float
    spikes: int

    def to_json(self) -> dict:
        return {"drift_m": self.drift_m, "drift_deg": self.drift_deg, "spikes": self.spikes, "end_s": END_S,
                "mps_noise_m": MPS_NOISE_M, "mps_noise_deg": MPS_NOISE_DEG, "spike_ms": SPIKE_MS}


def realism_rng(seed: int, index: int) -> np.random.Generator:
    """The generator of a sequence's nuisances (separate from its content's)."""
    return np.random.default_rng([seed, 4242, index])


def draw_spec(seconds: float, rng: np.random.Generator, drift_m: float | None = None,
              drift_deg: float | None = None) -> RealismSpec:
    scale = np.sqrt(seconds / 1200.0)
    m = float(rng.uniform(*DRIFT_PER_20MIN_M) * scale)
    d = float(rng.uniform(*DRIFT_PER_20MIN_DEG) * scale)
    return RealismSpec(drift_m=m if drift_m is None else float(drift_m),
                       drift_deg=d if drift_deg is None else float(drift_deg),
                       spikes=max(2, int(seconds // SPIKE_EVERY_S)))


def _walk(t: np.ndarray, seconds: float, rng: np.random.Generator, dims: int) -> np.ndarray:
    """(len(t), dims) smooth random walk starting at 0 (knots every `DRIFT_KNOT_S`), unscaled."""
    knots = np.linspace(0.0, seconds, max(3, int(np.ceil(seconds / DRIFT_KNOT_S)) + 1))
    steps = rng.normal(size=(knots.size - 1, dims))
    values = np.concatenate([np.zeros((1, dims)), np.cumsum(steps, axis=0)])
    return CubicSpline(knots, values, axis=0, bc_type="natural")(t)


def _fade(t: np.ndarray, seconds: float) -> np.ndarray:
    """1 at both ends, falling to 0 at `END_S` from them (squared)."""
    return np.clip(1.0 - t / END_S, 0, 1) ** 2 + np.clip(1.0 - (seconds - t) / END_S, 0, 1) ** 2


def xsens_error(t: np.ndarray, seconds: float, spec: RealismSpec, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Yaw (F,) radians and translation (F, 3) metres of the Xsens error at times `t` (s)."""
    w = _walk(t, seconds, rng, 4)
    h = np.linalg.norm(w[:, :2], axis=-1).max()
    trans = np.empty((t.size, 3))
    trans[:, :2] = w[:, :2] * (spec.drift_m / h if h > 0 else 0.0)
    trans[:, 2] = w[:, 2] * (DRIFT_VERTICAL * spec.drift_m / max(np.abs(w[:, 2]).max(), 1e-12))
    yaw = w[:, 3] * (np.deg2rad(spec.drift_deg) / max(np.abs(w[:, 3]).max(), 1e-12))
    direction = rng.normal(size=3)
    direction /= np.linalg.norm(direction)
    fade = _fade(t, seconds)
    trans += fade[:, None] * END_XSENS_M * direction
    yaw += fade * np.deg2rad(END_XSENS_DEG) * rng.choice([-1.0, 1.0])
    return yaw, trans


def mps_error(t: np.ndarray, seconds: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Rotation vectors (N, 3) and translations (N, 3) of the MPS error (device frame) at `t` (s)."""
    knots = np.arange(0.0, seconds + 2.0 / MPS_NOISE_HZ, 1.0 / MPS_NOISE_HZ)
    noise = rng.normal(size=(knots.size, 6))
    rot = np.stack([np.interp(t, knots, noise[:, k]) for k in range(3)], axis=-1) * np.deg2rad(MPS_NOISE_DEG)
    trans = np.stack([np.interp(t, knots, noise[:, k]) for k in range(3, 6)], axis=-1) * MPS_NOISE_M
    axis = rng.normal(size=(2, 3))
    axis /= np.linalg.norm(axis, axis=-1, keepdims=True)
    fade = _fade(t, seconds)[:, None]
    return rot + fade * np.deg2rad(END_MPS_DEG) * axis[0], trans + fade * END_MPS_M * axis[1]


def apply_xsens_error(positions: np.ndarray, rotations: np.ndarray, yaw: np.ndarray,
                      trans: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(F, S, 3), (F, S, 3, 3) true -> reported: ``Rz(yaw) · true + trans`` per frame."""
    c, s = np.cos(yaw), np.sin(yaw)
    Rz = np.zeros((yaw.size, 3, 3))
    Rz[:, 0, 0], Rz[:, 0, 1], Rz[:, 1, 0], Rz[:, 1, 1], Rz[:, 2, 2] = c, -s, s, c, 1.0
    R = Rz[:, None]
    return (R @ positions[..., None])[..., 0] + trans[:, None], R @ rotations


def apply_mps_error(T: np.ndarray, rotvec: np.ndarray, trans: np.ndarray) -> np.ndarray:
    """(N, 4, 4) true device poses -> reported ``T · [exp(rotvec), trans]``."""
    E = np.zeros_like(T)
    E[:, :3, :3] = Rotation.from_rotvec(rotvec).as_matrix()
    E[:, :3, 3] = trans
    E[:, 3, 3] = 1.0
    return T @ E


def spike_timestamps(t_us: np.ndarray, spec: RealismSpec, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A copy of int64 Xsens stamps with `spec.spikes` single samples `SPIKE_MS` late (never the
    first or last 240 samples), and the spiked frame indices."""
    t = t_us.copy()
    n = t.size
    frames = np.sort(rng.choice(np.arange(240, n - 240), size=min(spec.spikes, max(0, n - 480)), replace=False))
    t[frames] += int(SPIKE_MS * 1000)
    return t, frames


def narration_csv(header: list[str], rows: list[list], device_start_ns: list[tuple[int, int]],
                  rng: np.random.Generator) -> str:
    """A narration CSV in the released schema: `header` holds the text columns, `rows` their
    texts, `device_start_ns` the (start, end) device times (ns) of each row. Returns the text,
    BOM included; times as float seconds with µs resolution."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow([*NARRATION_HEADER, *header])
    created = 1_690_000_000 + int(rng.integers(0, 10**7))
    for k, (texts, (s, e)) in enumerate(zip(rows, device_start_ns, strict=True)):
        w.writerow([f"{int(rng.integers(10**15, 10**16))}", f"{int(rng.integers(10**14, 10**15))}",
                    f"{s / 1e9:.6f}", f"{e / 1e9:.6f}", f"annotator_{int(rng.integers(1, 40)):02d}",
                    f"{created + 37 * k}", *texts])
    return "\ufeff" + buf.getvalue()


def write_gt(root: Path, xsens_yaw: np.ndarray, xsens_trans: np.ndarray, mps_rotvec: np.ndarray,
             mps_trans: np.ndarray, spike_frames: np.ndarray) -> None:
    np.savez_compressed(root / GT_FILE, xsens_error_yaw=xsens_yaw, xsens_error_trans=xsens_trans,
                        mps_error_rotvec=mps_rotvec, mps_error_trans=mps_trans, spike_frames=spike_frames)
