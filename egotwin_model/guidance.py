"""Classifier-free guidance for T2VM, TM2V and TV2M (paper §3.3, eq. 3 and eq. 4).

Notation: f = prediction with every condition, c = with the text only (the other modality
dropped), u = with nothing (text dropped too). Eq. 3 (TM2V, video branch) and eq. 4 (T2VM, each
branch) are both

    u + w_t (c - u) + w_x (f - c)

with w_x the scale of the other modality's condition (TM2V: w_m; TV2M: w_v; T2VM: w_m for the
video branch, w_v for the motion branch). We evaluate it as the algebraically equal
``f + (w_t - 1)(c - u) + (w_x - 1)(f - c)`` so unit scales return f bit-exactly.

What "dropped" means (asynchronous diffusion makes these the unconditional inputs):
* text -> the empty-prompt embedding supplied by the caller;
* a modality -> pure noise at t = T - 1 (with its latent 0 still the clean first frame / first
  pose, see `egotwin_model.diffusion`); a given condition modality is clean with t = 0.
With synchronous diffusion ("w/o AD", VidMLD) one timestep serves both modalities, so guidance is
vanilla CFG over the text (`cond + (w_t - 1)(cond - uncond)`), and a condition modality enters
"replaced": its clean latents noised to the current t (the replacement method).

`guided_prediction` builds all passes of one step stacked along the batch, runs the model once
and combines the outputs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch

from egotwin_model.config import GuidanceConfig
from egotwin_model.diffusion import add_noise, keep_first_latent
from egotwin_model.dit import DiTOutput

Task = Literal["t2vm", "tm2v", "tv2m"]
State = Literal["current", "clean", "noise", "renoised"]
TASKS: tuple[str, ...] = ("t2vm", "tm2v", "tv2m")


def two_condition_cfg(full: torch.Tensor, text_only: torch.Tensor, uncond: torch.Tensor,
                      text_scale: float, other_scale: float) -> torch.Tensor:
    """Eq. 3 / eq. 4: u + w_t (c - u) + w_x (f - c), as f + (w_t-1)(c-u) + (w_x-1)(f-c)."""
    return full + (text_scale - 1.0) * (text_only - uncond) + (other_scale - 1.0) * (full - text_only)


def vanilla_cfg(cond: torch.Tensor, uncond: torch.Tensor, scale: float) -> torch.Tensor:
    """Ho & Salimans CFG: u + w (c - u), as c + (w - 1)(c - u)."""
    return cond + (scale - 1.0) * (cond - uncond)


@dataclass(frozen=True)
class Pass:
    """One model evaluation: text on/off and how each modality enters."""

    name: str
    text: bool
    video: State
    motion: State


def passes(task: Task, asynchronous: bool) -> tuple[Pass, ...]:
    """The model evaluations one guided step needs."""
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; use one of {TASKS}")
    gen_v = "current" if task in ("t2vm", "tm2v") else ("clean" if asynchronous else "renoised")
    gen_m = "current" if task in ("t2vm", "tv2m") else ("clean" if asynchronous else "renoised")
    if not asynchronous:
        return (Pass("cond", True, gen_v, gen_m), Pass("uncond", False, gen_v, gen_m))
    if task == "tm2v":
        return (Pass("full", True, "current", "clean"), Pass("text", True, "current", "noise"),
                Pass("uncond", False, "current", "noise"))
    if task == "tv2m":
        return (Pass("full", True, "clean", "current"), Pass("text", True, "noise", "current"),
                Pass("uncond", False, "noise", "current"))
    return (Pass("full", True, "current", "current"),
            Pass("video_text", True, "current", "noise"), Pass("video_uncond", False, "current", "noise"),
            Pass("motion_text", True, "noise", "current"), Pass("motion_uncond", False, "noise", "current"))


def combine(task: Task, asynchronous: bool, outputs: dict[str, DiTOutput], scales: GuidanceConfig) -> DiTOutput:
    """Guided predictions of the generated modalities (None for a condition modality)."""
    w_t, w_v, w_m = scales.text_scale, scales.video_scale, scales.motion_scale
    make_v, make_m = task in ("t2vm", "tm2v"), task in ("t2vm", "tv2m")
    if not asynchronous:
        c, u = outputs["cond"], outputs["uncond"]
        return DiTOutput(video=vanilla_cfg(c.video, u.video, w_t) if make_v else None,
                         motion=vanilla_cfg(c.motion, u.motion, w_t) if make_m else None)
    f = outputs["full"]
    if task == "tm2v":
        return DiTOutput(two_condition_cfg(f.video, outputs["text"].video, outputs["uncond"].video, w_t, w_m), None)
    if task == "tv2m":
        return DiTOutput(None, two_condition_cfg(f.motion, outputs["text"].motion, outputs["uncond"].motion, w_t, w_v))
    return DiTOutput(
        video=two_condition_cfg(f.video, outputs["video_text"].video, outputs["video_uncond"].video, w_t, w_m),
        motion=two_condition_cfg(f.motion, outputs["motion_text"].motion, outputs["motion_uncond"].motion, w_t, w_v),
    )


def _enter(state: State, latents: torch.Tensor, noise: torch.Tensor | None, t: torch.Tensor,
           alphas: torch.Tensor | None, t_max: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(latents, timesteps (B,)) of one modality in one pass."""
    if state == "current":
        return latents, t
    if state == "clean":
        return latents, torch.zeros_like(t)
    if noise is None:
        raise ValueError(f"the {state!r} input of a modality needs its noise tensor")
    if state == "noise":
        return keep_first_latent(noise, latents), torch.full_like(t, t_max)
    if alphas is None:
        raise ValueError("synchronous conditioning ('renoised') needs the schedule's alphas_cumprod")
    return keep_first_latent(add_noise(alphas, latents, noise, t), latents), t


def stack_passes(
    plan: tuple[Pass, ...], *, text: torch.Tensor, null_text: torch.Tensor, video: torch.Tensor,
    motion: torch.Tensor, t: torch.Tensor, video_noise: torch.Tensor | None, motion_noise: torch.Tensor | None,
    alphas: torch.Tensor | None, t_max: int,
) -> dict[str, torch.Tensor]:
    """Model inputs of all passes concatenated along the batch (pass-major)."""
    null = null_text.to(text.dtype).expand_as(text)
    cols: dict[str, list[torch.Tensor]] = {"text": [], "video": [], "motion": [], "t_video": [], "t_motion": []}
    for p in plan:
        v, tv = _enter(p.video, video, video_noise, t, alphas, t_max)
        m, tm = _enter(p.motion, motion, motion_noise, t, alphas, t_max)
        for key, value in zip(cols, (text if p.text else null, v, m, tv, tm)):
            cols[key].append(value)
    return {key: torch.cat(values, dim=0) for key, values in cols.items()}


def split_passes(plan: tuple[Pass, ...], output: DiTOutput) -> dict[str, DiTOutput]:
    """Inverse of `stack_passes` on the model output: pass name -> DiTOutput."""
    n = len(plan)
    vs = output.video.chunk(n, dim=0) if output.video is not None else [None] * n
    ms = output.motion.chunk(n, dim=0) if output.motion is not None else [None] * n
    return {p.name: DiTOutput(v, m) for p, v, m in zip(plan, vs, ms)}


def guided_prediction(
    model, task: Task, *, text: torch.Tensor, null_text: torch.Tensor, video: torch.Tensor, motion: torch.Tensor,
    t: int | torch.Tensor, scales: GuidanceConfig, asynchronous: bool,
    video_noise: torch.Tensor | None = None, motion_noise: torch.Tensor | None = None,
    alphas: torch.Tensor | None = None, t_max: int = 999,
) -> DiTOutput:
    """One guided model prediction for `task`.

    Args:
        model: `EgoTwinDiT` (anything with its forward signature).
        text: (B, Lt, Dt) prompt embeddings; null_text: (1 or B, Lt, Dt) empty-prompt embedding.
        video, motion: generated modality -> its current x_t (latent 0 clean); condition
            modality -> its clean latents.
        t: current timestep (int or (B,)).
        video_noise, motion_noise: noise of a dropped (asynchronous) or re-noised (synchronous)
            modality, shaped like it; draw once per sample (or per step) from a seeded generator.
        alphas: `diffusion.alphas_cumprod` (synchronous TM2V/TV2M only).
    """
    b = text.shape[0]
    t = torch.as_tensor(t, device=text.device).long().reshape(-1).expand(b)
    plan = passes(task, asynchronous)
    inputs = stack_passes(plan, text=text, null_text=null_text, video=video, motion=motion, t=t,
                          video_noise=video_noise, motion_noise=motion_noise, alphas=alphas, t_max=t_max)
    out = model(inputs["text"], inputs["video"], inputs["motion"], inputs["t_video"], inputs["t_motion"])
    return combine(task, asynchronous, split_passes(plan, out), scales)
