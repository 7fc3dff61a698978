"""Classifier-free-guided sampling of a trained run into a benchmark submission.

For each clip of the reference dataset's test split:

1. **Conditions.** The prompt -> T5 embedding (the empty prompt is the null text). The first
   video frame, encoded *alone* by the video VAE, is video latent 0; the first pose, encoded
   alone by the motion VAE, is motion latent 0 (`egotwin_model.diffusion`: both stay clean at
   every step and are never denoised). TM2V also takes the reference motion (all latents,
   clean, t = 0); TV2M the reference video. This is exactly how the training stages build
   latent 0, so train and test conditions agree.
2. **Denoising.** DDIM with the run's CogVideoX schedule (`--steps`, default the config's),
   guidance eq. 3 / eq. 4 with w_t, w_v, w_m (`egotwin_model.guidance`; vanilla CFG for runs
   with synchronous diffusion, "w/o AD" / VidMLD). All passes of a step run as one batch.
3. **Decoding.** Video latents -> the video VAE decoder -> uint8 frames at the model's size,
   resized (bicubic, antialiased when shrinking) to 480 x 480 (the tiny config works at 64 x 64
   and is upsampled here). `SampleConfig.video_size` writes another side instead: a draft to
   move off a GPU host at the model's size (`pipelines/small_pack.py finish` upsamples it to
   480 with the same `upsample_video` before `evaluate`, which accepts 480 x 480 only). Motion latents / scale -> motion VAE decoder -> de-normalised
   features -> the representation's `decode` (canonical frame) -> world with the reference
   clip's first pose: head-centric uses `head_centric.canonical_transform` (first head pose);
   root-centric the rigid transform that `root_centric.canonicalize` removed (first pelvis
   position on the floor + heading).
4. **Writing.** ``<out>/<clip_id>.mp4`` + ``.npz`` (world joints) per clip via
   `egotwin_bench.evaluate.submission.write_clip` (atomic; finished clips are skipped on a rerun)
   and ``submission.json`` last. The modality given as a condition (TM2V's motion, TV2M's video)
   is written from the reference clip unchanged.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from egotwin_bench import geometry
from egotwin_bench.constants import VIDEO_SIZE
from egotwin_bench.curation.video import decode_mp4, encode_mp4
from egotwin_bench.evaluate.reference import load_clips, reference_name
from egotwin_bench.evaluate.submission import SAFE_NAME, SubmissionMeta, write_clip, write_meta
from egotwin_bench.motion import REPRESENTATIONS, head_centric, root_centric
from egotwin_bench.skeleton import PELVIS
from egotwin_model import diffusion, guidance
from egotwin_model.checkpoint import load_weights
from egotwin_model.config import VIDEO_LATENT_FRAMES, EgoTwinConfig, GuidanceConfig
from egotwin_model.dit import DiTOutput, EgoTwinDiT, inference_dit
from egotwin_model.encoders import load_encoders
from egotwin_model.guidance import TASKS
from egotwin_model.precompute import load_tensors
from egotwin_model.run import dit_path, encoders_dir, open_run, video_size
from egotwin_model.stages.motion_vae import load_motion_vae
from egotwin_model.stages.t2m_joint import motion_latents


@dataclass(frozen=True)
class SampleConfig:
    """Sampling options (scales default to the run config's [guidance])."""

    task: str
    steps: int | None = None
    text_scale: float | None = None
    video_scale: float | None = None
    motion_scale: float | None = None
    seed: int = 0
    batch_size: int = 2
    limit: int | None = None
    device: str = "cpu"
    video_size: int = VIDEO_SIZE  # side of the written videos; the benchmark takes VIDEO_SIZE only

    def guidance(self, config: EgoTwinConfig) -> GuidanceConfig:
        g = config.guidance
        return GuidanceConfig(
            text_scale=g.text_scale if self.text_scale is None else self.text_scale,
            video_scale=g.video_scale if self.video_scale is None else self.video_scale,
            motion_scale=g.motion_scale if self.motion_scale is None else self.motion_scale,
        )


@dataclass
class Sampler:
    """Everything sampling needs from a trained RUN_DIR, loaded once."""

    config: EgoTwinConfig
    dit: nn.Module
    motion_vae: nn.Module
    motion_scale: float
    motion_mean: torch.Tensor
    motion_std: torch.Tensor
    text_encoder: object
    video_vae: object
    null_text: torch.Tensor
    info: dict = field(default_factory=dict)

    @classmethod
    def from_run(cls, run_dir: str | Path, device: str = "cpu") -> "Sampler":
        """Load the joint-stage DiT, both VAEs, the text encoder and the motion statistics."""
        run_dir = Path(run_dir)
        settings = open_run(run_dir, None)
        config = settings.model_config()
        dit = inference_dit(load_weights(EgoTwinDiT(config.dit), dit_path(run_dir, "joint"), "joint"), device)
        motion_vae, scale = load_motion_vae(run_dir, config)
        stats_path = run_dir / "cache" / "motion_stats.safetensors"
        if not stats_path.is_file():
            raise FileNotFoundError(f"{stats_path} not found: run `egotwin-model precompute` into {run_dir}")
        stats = load_tensors(stats_path)
        text, video = load_encoders(encoders_dir(run_dir, settings), config.dit.max_text_seq_length,
                                    video_size(config), device=device)
        rep = config.representation
        info = {"run_dir": str(run_dir.resolve()), "config": config.name, "variant": settings.variant,
                "representation": rep, "video_size": video.size, "weights": settings.weights}
        return cls(config, dit, motion_vae.to(device), scale, stats[f"{rep}_mean"], stats[f"{rep}_std"],
                   text, video, text.encode([""]), info)

    # ------------------------------------------------------------------ conditions / decoding

    def motion_latents(self, positions: np.ndarray, rotations: np.ndarray) -> torch.Tensor:
        """World motion (B, 81, 23, 3) / (B, 81, 23, 3, 3) -> scaled latents (B, 21, C_m) (posterior mean)."""
        feats = torch.as_tensor(np.asarray(REPRESENTATIONS[self.config.representation].encode(positions, rotations),
                                           dtype=np.float32))
        device = self.null_text.device
        x = ((feats - self.motion_mean) / self.motion_std).to(device)
        return motion_latents(self.motion_vae, self.motion_scale, x, None)

    def decode_motion(self, latents: torch.Tensor, positions: np.ndarray, rotations: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Scaled latents (B, 21, C_m) -> world positions (B, 81, 23, 3), rotations (B, 81, 23, 3, 3)
        placed with the reference clips' first pose (`positions`/`rotations`, world, (B, 81, ...))."""
        with torch.no_grad():
            feats = self.motion_vae.decode(latents / self.motion_scale).cpu() * self.motion_std + self.motion_mean
        return decode_to_world(self.config.representation, feats.double().numpy(), positions, rotations)

    # ------------------------------------------------------------------ sampling

    @torch.no_grad()
    def sample(self, task: str, text: torch.Tensor, video_cond: torch.Tensor, motion_cond: torch.Tensor,
               steps: int, scales: GuidanceConfig, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """Denoise one batch. `video_cond` (B, F', C, h, w) / `motion_cond` (B, L, C_m): latent 0 is the
        condition; the rest is used only when the modality is the task's condition (TM2V motion,
        TV2M video). Returns final (video, motion) latents (the condition modality unchanged)."""
        cfg = self.config
        scheduler = diffusion.make_scheduler(cfg.diffusion)
        timesteps = diffusion.set_inference_steps(scheduler, steps, device=text.device)
        alphas = diffusion.alphas_cumprod(cfg.diffusion).to(text.device)
        make_v, make_m = task in ("t2vm", "tm2v"), task in ("t2vm", "tv2m")
        video = diffusion.initial_latents(video_cond, generator=generator) if make_v else video_cond
        motion = diffusion.initial_latents(motion_cond, generator=generator) if make_m else motion_cond
        video_noise = torch.randn(video_cond.shape, generator=generator, device=generator.device).to(video_cond)
        motion_noise = torch.randn(motion_cond.shape, generator=generator, device=generator.device).to(motion_cond)
        for t in timesteps:
            out = guidance.guided_prediction(
                self.dit, task, text=text, null_text=self.null_text, video=video, motion=motion, t=t,
                scales=scales, asynchronous=cfg.dit.asynchronous, video_noise=video_noise,
                motion_noise=motion_noise, alphas=alphas, t_max=cfg.diffusion.num_train_timesteps - 1,
            )
            if make_v:
                video = diffusion.denoise_step(scheduler, out.video, t, video, condition=video_cond)
            if make_m:
                motion = diffusion.denoise_step(scheduler, out.motion, t, motion, condition=motion_cond)
        return video, motion


def decode_to_world(representation: str, features: np.ndarray, ref_positions: np.ndarray,
                    ref_rotations: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Features (B, 81, D) -> world motion placed like the reference clips (B, 81, 23, 3 [,3]).

    head_centric: the reference's first head pose (`canonical_transform`). root_centric: the
    rigid map undone by `root_centric.canonicalize`, recovered from the reference's frame-0 pelvis.
    """
    ref_positions, ref_rotations = np.asarray(ref_positions, np.float64), np.asarray(ref_rotations, np.float64)
    if representation == "head_centric":
        T = np.asarray(head_centric.canonical_transform(ref_positions, ref_rotations))
        positions, rotations = head_centric.decode(features, T)
        return np.asarray(positions, np.float32), np.asarray(rotations, np.float32)
    if representation != "root_centric":
        raise ValueError(f"unknown representation {representation!r}")
    can_p, can_R = (np.asarray(a) for a in root_centric.canonicalize(ref_positions[:, :1], ref_rotations[:, :1]))
    R = ref_rotations[:, 0, PELVIS] @ np.swapaxes(can_R[:, 0, PELVIS], -1, -2)  # world <- canonical (yaw only)
    T = geometry.make_transform(R, ref_positions[:, 0, PELVIS] - (R @ can_p[:, 0, PELVIS, :, None])[..., 0])
    positions, rotations = (np.asarray(a) for a in root_centric.decode(features))
    positions = geometry.transform_points(T[:, None, None], positions)
    rotations = T[:, None, None, :3, :3] @ rotations
    return positions.astype(np.float32), rotations.astype(np.float32)


def upsample_video(frames: torch.Tensor, size: int = VIDEO_SIZE) -> np.ndarray:
    """uint8 (F, s, s, 3) -> uint8 (F, size, size, 3), bicubic (antialiased when shrinking)."""
    x = frames.permute(0, 3, 1, 2).float()
    if x.shape[-1] != size:
        x = torch.nn.functional.interpolate(x, size=(size, size), mode="bicubic", align_corners=False,
                                            antialias=size < x.shape[-1])
    return x.clamp(0, 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()


def write_submission(run_dir: str | Path, reference: str | Path, out: str | Path, sc: SampleConfig,
                     method: str | None = None, progress: bool = True) -> Path:
    """Sample every (first `limit`) test clip of `reference` into the submission folder `out`."""
    if sc.task not in TASKS:
        raise ValueError(f"unknown task {sc.task!r}; use one of {', '.join(TASKS)}")
    out = Path(out)
    method = method or out.name
    if not SAFE_NAME.match(method):
        raise ValueError(f"method name {method!r} must be letters, digits, '.', '_' or '-' (it names the folder)")
    sampler = Sampler.from_run(run_dir, sc.device)
    cfg = sampler.config
    steps = sc.steps or cfg.diffusion.num_inference_steps
    scales = sc.guidance(cfg)
    clips = load_clips(reference, "test", with_video=True, limit=sc.limit)
    if not clips:
        raise ValueError(f"{reference} has no test clip")
    out.mkdir(parents=True, exist_ok=True)
    todo = [c for c in clips if not ((out / f"{c.clip_id}.mp4").exists() and (out / f"{c.clip_id}.npz").exists())]
    generator = torch.Generator(device=sc.device).manual_seed(sc.seed)
    lv = cfg.dit.sample_height
    for start in tqdm(range(0, len(todo), sc.batch_size), desc=f"sample {sc.task}", disable=not progress,
                      unit="batch"):
        batch = todo[start:start + sc.batch_size]
        positions = np.stack([c.positions for c in batch]).astype(np.float64)
        rotations = np.stack([c.rotations for c in batch]).astype(np.float64)
        frames = np.stack([decode_mp4(c.video_mp4) for c in batch])
        text = sampler.text_encoder.encode([c.text for c in batch])
        first = sampler.video_vae.encode(frames[:, :1])
        if sc.task == "tv2m":
            video_cond = torch.cat([first, sampler.video_vae.encode(frames)[:, 1:]], dim=1)
        else:
            video_cond = torch.cat([first, first.new_zeros(len(batch), VIDEO_LATENT_FRAMES - 1, *first.shape[2:])], dim=1)
        motion_cond = sampler.motion_latents(positions, rotations)
        if tuple(first.shape[-2:]) != (lv, lv):  # square clips: latent side = the config's sample_height
            raise ValueError(f"video latents are {tuple(first.shape[-2:])} but the DiT expects ({lv}, {lv}); "
                             "the reference clips' resolution does not match the run's config")
        video, motion = sampler.sample(sc.task, text, video_cond, motion_cond, steps, scales, generator)
        if sc.task != "tv2m":
            videos = sampler.video_vae.decode(video)
        if sc.task != "tm2v":
            gen_pos, gen_rot = sampler.decode_motion(motion, positions, rotations)
        for i, clip in enumerate(batch):
            mp4 = clip.video_mp4 if sc.task == "tv2m" else encode_mp4(upsample_video(videos[i], sc.video_size))
            pos, rot = (clip.positions, clip.rotations) if sc.task == "tm2v" else (gen_pos[i], gen_rot[i])
            write_clip(out, clip.clip_id, mp4, positions=pos, rotations=rot)
    meta = SubmissionMeta(
        method=method, task=sc.task, motion_format="world_joints", reference=reference_name(reference, "test"),
        guidance={"text_scale": scales.text_scale, "video_scale": scales.video_scale,
                  "motion_scale": scales.motion_scale, "steps": steps, "seed": sc.seed,
                  "cfg": "eq3/eq4" if cfg.dit.asynchronous else "vanilla"},
        model={**sampler.info, "upsampled_to": sc.video_size, "sample_config": asdict(sc)},
    )
    write_meta(out, meta)
    return out

