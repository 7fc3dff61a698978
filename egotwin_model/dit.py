"""Triple-branch MM-DiT over text, video and motion tokens (paper §3.2; DESIGN §6).

Text and video branches are diffusers' CogVideoX modules with CogVideoX's parameter names, so a
`CogVideoXTransformer3DModel` state dict (CogVideoX-5B) loads with no key mapping
(`EgoTwinDiT.load_cogvideox`): `CogVideoXBlock` already is "text and video share every weight
but their AdaLN" (its `CogVideoXLayerNormZero` emits shift/scale/gate for both streams).

The motion branch has its own weights at width D_m and lives in blocks 0 .. motion_layers-1 (the
lower half). Its tokens are projected to the joint width D for attention (own q/k/v, D_m -> D)
and back (D -> D_m), get fixed sinusoidal positions, and are modulated by AdaLN with gating from
the same timestep embedding. Joint attention runs over ``[text, video, motion]`` with the
interaction mask (`egotwin_model.interaction`); upper blocks are plain CogVideoX blocks.

Timesteps: asynchronous -> sinusoid(t_video) ++ sinusoid(t_motion) -> MLP -> AdaLN input;
synchronous ("w/o AD") -> CogVideoX's own single embedding and t_motion must equal t_video.

Shapes: text (B, Lt, Dt); video latents (B, F, Cv, h, w) (F = 11, 60 x 60 at paper size);
motion latents (B, Lm, Cm) (Lm = 21); timesteps (B,) integers in [0, 1000). The outputs are the
model's predictions (v-prediction, see `egotwin_model.diffusion`) in the input shapes.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch
from diffusers.models.attention import FeedForward
from diffusers.models.embeddings import (
    CogVideoXPatchEmbed,
    TimestepEmbedding,
    Timesteps,
    apply_rotary_emb,
    get_1d_sincos_pos_embed_from_grid,
    get_3d_rotary_pos_embed,
)
from diffusers.models.normalization import AdaLayerNorm
from diffusers.models.transformers.cogvideox_transformer_3d import CogVideoXBlock
from safetensors import safe_open
from torch import nn

from egotwin_model.config import DiTConfig
from egotwin_model.interaction import Backend, MaskSpec, TokenLayout, joint_attention
from egotwin_model.pretrained import PretrainedMixin

Rope = tuple[torch.Tensor, torch.Tensor]


@dataclass
class DiTOutput:
    """Predictions in the latent shapes; None for a modality that was not given."""

    video: torch.Tensor | None
    motion: torch.Tensor | None


# A pytree node, so FSDP2 finds the output tensors and registers its pre-backward hooks on them.
torch.utils._pytree.register_dataclass(DiTOutput)


class MotionStream(nn.Module):
    """The motion branch's weights inside one block (width D_m, attention at width D)."""

    def __init__(self, cfg: DiTConfig) -> None:
        super().__init__()
        dm, d = cfg.motion_dim, cfg.inner_dim
        self.heads = cfg.num_attention_heads
        self.norm1 = nn.LayerNorm(dm, eps=cfg.norm_eps, elementwise_affine=cfg.norm_elementwise_affine)
        self.to_q = nn.Linear(dm, d, bias=cfg.attention_bias)
        self.to_k = nn.Linear(dm, d, bias=cfg.attention_bias)
        self.to_v = nn.Linear(dm, d, bias=cfg.attention_bias)
        self.norm_q = nn.LayerNorm(cfg.attention_head_dim, eps=1e-6)
        self.norm_k = nn.LayerNorm(cfg.attention_head_dim, eps=1e-6)
        self.to_out = nn.Linear(d, dm)
        self.norm2 = nn.LayerNorm(dm, eps=cfg.norm_eps, elementwise_affine=cfg.norm_elementwise_affine)
        self.ff = FeedForward(dm, mult=cfg.motion_ff_mult, activation_fn=cfg.activation_fn, dropout=cfg.dropout)
        if cfg.motion_adaln == "single":
            self.scale_shift_table = nn.Parameter(torch.zeros(6, dm))
        else:
            self.modulation = nn.Sequential(nn.SiLU(), nn.Linear(cfg.time_embed_dim, 6 * dm))
            nn.init.zeros_(self.modulation[1].weight)
            nn.init.zeros_(self.modulation[1].bias)

    def modulations(self, temb: torch.Tensor, shared: torch.Tensor | None) -> tuple[torch.Tensor, ...]:
        """(shift1, scale1, gate1, shift2, scale2, gate2), each (B, 1, D_m)."""
        if hasattr(self, "scale_shift_table"):
            mod = shared.unflatten(1, (6, -1)) + self.scale_shift_table[None]
        else:
            mod = self.modulation(temb).unflatten(1, (6, -1))
        return tuple(m[:, None] for m in mod.unbind(1))

    def qkv(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(B, Lm, D_m) normed tokens -> q, k, v (B, H, Lm, Dh)."""
        q, k, v = (_heads(p(x), self.heads) for p in (self.to_q, self.to_k, self.to_v))
        return self.norm_q(q), self.norm_k(k), v


def _heads(x: torch.Tensor, heads: int) -> torch.Tensor:
    return x.unflatten(-1, (heads, -1)).transpose(1, 2)


def _modulate(norm: nn.LayerNorm, x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    return norm(x) * (1 + scale) + shift


class EgoTwinBlock(CogVideoXBlock):
    """A `CogVideoXBlock` (text + video, same parameter names) plus an optional motion stream."""

    def __init__(self, cfg: DiTConfig, with_motion: bool) -> None:
        super().__init__(
            dim=cfg.inner_dim, num_attention_heads=cfg.num_attention_heads,
            attention_head_dim=cfg.attention_head_dim, time_embed_dim=cfg.time_embed_dim,
            dropout=cfg.dropout, activation_fn=cfg.activation_fn, attention_bias=cfg.attention_bias,
            norm_elementwise_affine=cfg.norm_elementwise_affine, norm_eps=cfg.norm_eps,
        )
        self.motion = MotionStream(cfg) if with_motion else None

    def _text_video_mods(self, norm_zero: nn.Module, temb: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """CogVideoXLayerNormZero's (shift, scale, gate, enc_shift, enc_scale, enc_gate), (B, 1, D)."""
        return tuple(m[:, None] for m in norm_zero.linear(norm_zero.silu(temb)).chunk(6, dim=1))

    def forward(
        self,
        video: torch.Tensor | None,
        text: torch.Tensor,
        motion: torch.Tensor | None,
        temb: torch.Tensor,
        rope: Rope | None = None,
        mask_spec: MaskSpec | None = None,
        motion_shared_mod: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor | None, torch.Tensor, torch.Tensor | None]:
        """Tokens (B, Lv, D) / (B, Lt, D) / (B, Lm, D_m) -> the same, after attention + FF."""
        lt = text.shape[1]
        if motion is not None and self.motion is None:
            raise ValueError("this block has no motion branch")
        v_shift, v_scale, v_gate, t_shift, t_scale, t_gate = self._text_video_mods(self.norm1, temb)
        parts = [_modulate(self.norm1.norm, text, t_shift, t_scale)]
        if video is not None:
            parts.append(_modulate(self.norm1.norm, video, v_shift, v_scale))
        tv = torch.cat(parts, dim=1) if len(parts) > 1 else parts[0]
        attn = self.attn1
        q, k, v = (_heads(p(tv), attn.heads) for p in (attn.to_q, attn.to_k, attn.to_v))
        q, k = attn.norm_q(q), attn.norm_k(k)
        if rope is not None and video is not None:
            q = torch.cat([q[:, :, :lt], apply_rotary_emb(q[:, :, lt:], rope)], dim=2)
            k = torch.cat([k[:, :, :lt], apply_rotary_emb(k[:, :, lt:], rope)], dim=2)
        n_tv = tv.shape[1]
        if motion is not None:
            m_mods = self.motion.modulations(temb, motion_shared_mod)
            mq, mk, mv = self.motion.qkv(_modulate(self.motion.norm1, motion, m_mods[0], m_mods[1]))
            q, k, v = torch.cat([q, mq], dim=2), torch.cat([k, mk], dim=2), torch.cat([v, mv], dim=2)
        out = joint_attention(q, k, v, mask_spec).transpose(1, 2).flatten(2)
        tv_out = attn.to_out[1](attn.to_out[0](out[:, :n_tv]))
        text = text + t_gate * tv_out[:, :lt]
        if video is not None:
            video = video + v_gate * tv_out[:, lt:]
        if motion is not None:
            motion = motion + m_mods[2] * self.motion.to_out(out[:, n_tv:])

        v_shift, v_scale, v_gate, t_shift, t_scale, t_gate = self._text_video_mods(self.norm2, temb)
        parts = [_modulate(self.norm2.norm, text, t_shift, t_scale)]
        if video is not None:
            parts.append(_modulate(self.norm2.norm, video, v_shift, v_scale))
        ff = self.ff(torch.cat(parts, dim=1) if len(parts) > 1 else parts[0])
        text = text + t_gate * ff[:, :lt]
        if video is not None:
            video = video + v_gate * ff[:, lt:]
        if motion is not None:
            motion = motion + m_mods[5] * self.motion.ff(_modulate(self.motion.norm2, motion, m_mods[3], m_mods[4]))
        return video, text, motion


class EgoTwinDiT(PretrainedMixin, nn.Module):
    """The EgoTwin denoiser. `forward(text, video, motion, t_video, t_motion) -> DiTOutput`.

    `video=None`: text + motion only (stage t2m; only the lower `motion_layers` blocks run).
    `motion=None`: text-to-video only (equals CogVideoX on the same weights).
    Weights: `load_cogvideox(folder)` (pretrained text/video branches), `save_pretrained(folder)` /
    `EgoTwinDiT.from_pretrained(folder, attention_backend=...)` (the whole model).
    """

    config_class = DiTConfig

    def __init__(self, config: DiTConfig, attention_backend: Backend = "auto") -> None:
        super().__init__()
        self.config = config
        self.attention_backend: Backend = attention_backend
        d = config.inner_dim
        self.patch_embed = CogVideoXPatchEmbed(
            patch_size=config.patch_size, in_channels=config.in_channels, embed_dim=d,
            text_embed_dim=config.text_embed_dim, sample_width=config.sample_width,
            sample_height=config.sample_height, sample_frames=config.sample_frames,
            temporal_compression_ratio=config.temporal_compression_ratio,
            max_text_seq_length=config.max_text_seq_length,
            spatial_interpolation_scale=config.spatial_interpolation_scale,
            temporal_interpolation_scale=config.temporal_interpolation_scale,
            use_positional_embeddings=config.use_video_sincos_positions,
            use_learned_positional_embeddings=False,
        )
        self.embedding_dropout = nn.Dropout(config.dropout)
        self.time_proj = Timesteps(d, config.flip_sin_to_cos, config.freq_shift)
        n_embeddings = 2 if config.asynchronous else 1
        self.time_embedding = TimestepEmbedding(n_embeddings * d, config.time_embed_dim, config.timestep_activation_fn)
        self.transformer_blocks = nn.ModuleList(
            [EgoTwinBlock(config, with_motion=i < config.motion_layers) for i in range(config.num_layers)]
        )
        self.norm_final = nn.LayerNorm(d, config.norm_eps, config.norm_elementwise_affine)
        self.norm_out = AdaLayerNorm(
            embedding_dim=config.time_embed_dim, output_dim=2 * d,
            norm_elementwise_affine=config.norm_elementwise_affine, norm_eps=config.norm_eps, chunk_dim=1,
        )
        self.proj_out = nn.Linear(d, config.patch_size**2 * config.out_channels)

        dm = config.motion_dim
        self.motion_proj_in = nn.Linear(config.motion_channels, dm)
        self.motion_adaln_single = (
            nn.Sequential(nn.SiLU(), nn.Linear(config.time_embed_dim, 6 * dm)) if config.motion_adaln == "single" else None
        )
        self.motion_norm_out = AdaLayerNorm(
            embedding_dim=config.time_embed_dim, output_dim=2 * dm,
            norm_elementwise_affine=config.norm_elementwise_affine, norm_eps=config.norm_eps, chunk_dim=1,
        )
        self.motion_proj_out = nn.Linear(dm, config.motion_channels)
        zero = [self.motion_norm_out.linear, self.motion_proj_out]
        if self.motion_adaln_single is not None:
            zero.append(self.motion_adaln_single[1])
        for layer in zero:  # DiT init: motion blocks start as identities, the motion head at 0
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)

    @property
    def blocks(self) -> nn.ModuleList:
        """The transformer blocks (for FSDP2 `fully_shard` / activation checkpointing per block)."""
        return self.transformer_blocks

    # ------------------------------------------------------------------ embeddings

    def timestep_embedding(self, t_video: torch.Tensor, t_motion: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        """(B,) + (B,) integer timesteps -> (B, time_embed_dim) AdaLN input."""
        if self.config.asynchronous:
            t_emb = torch.cat([self.time_proj(t_video), self.time_proj(t_motion)], dim=-1)
        else:
            if not torch.equal(t_video, t_motion):
                raise ValueError("synchronous diffusion (asynchronous=false) needs t_motion == t_video")
            t_emb = self.time_proj(t_video)
        return self.time_embedding(t_emb.to(dtype))

    def video_rope(self, frames: int, height: int, width: int, device: torch.device) -> Rope | None:
        """CogVideoX's 3D RoPE (cos, sin) for a (frames, height, width) latent, as its pipeline."""
        if not self.config.use_rotary_positional_embeddings:
            return None
        # lazy: the CogVideoX pipeline module (~0.5 s more: T5 and the pipeline stack) for this one helper
        from diffusers.pipelines.cogvideo.pipeline_cogvideox import get_resize_crop_region_for_grid

        p = self.config.patch_size
        grid = (height // p, width // p)
        crops = get_resize_crop_region_for_grid(grid, self.config.sample_width // p, self.config.sample_height // p)
        return get_3d_rotary_pos_embed(
            embed_dim=self.config.attention_head_dim, crops_coords=crops, grid_size=grid,
            temporal_size=frames, device=device,
        )

    def motion_positions(self, length: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
        """(length, D_m) fixed sinusoidal positions of the motion tokens."""
        pos = get_1d_sincos_pos_embed_from_grid(
            self.config.motion_dim, torch.arange(length, device=device, dtype=torch.float64), output_type="pt"
        )
        return pos.to(dtype)

    # ------------------------------------------------------------------ forward

    def forward(
        self,
        text: torch.Tensor,
        video: torch.Tensor | None,
        motion: torch.Tensor | None,
        t_video: torch.Tensor | None,
        t_motion: torch.Tensor | None,
    ) -> DiTOutput:
        """Predict for the given modalities. A missing modality's timestep may be None: it then
        counts as pure noise (t = T - 1) with asynchronous timesteps, as the other one otherwise."""
        cfg = self.config
        if video is None and motion is None:
            raise ValueError("give video latents, motion latents or both")
        if motion is not None and cfg.motion_layers == 0:
            raise ValueError("this config has no motion branch (motion_layers = 0)")
        t_video, t_motion = self._fill_timesteps(text, video, motion, t_video, t_motion)
        dtype = self.proj_out.weight.dtype
        emb = self.timestep_embedding(t_video, t_motion, dtype)

        if video is not None:
            b, frames, _, height, width = video.shape
            hidden = self.embedding_dropout(self.patch_embed(text, video))
            text_h, video_h = hidden[:, : text.shape[1]], hidden[:, text.shape[1] :]
            rope = self.video_rope(frames, height, width, video.device)
            layout = TokenLayout(text.shape[1], frames, video_h.shape[1] // frames, 0)
        else:
            text_h, video_h, rope = self.embedding_dropout(self.patch_embed.text_proj(text)), None, None
            layout = TokenLayout(text.shape[1], 0, 0, 0)
        motion_h, shared_mod = None, None
        if motion is not None:
            motion_h = self.motion_proj_in(motion) + self.motion_positions(motion.shape[1], motion.device, motion.dtype)
            if self.motion_adaln_single is not None:
                shared_mod = self.motion_adaln_single(emb)
        with_motion = MaskSpec(
            TokenLayout(layout.text, layout.frames, layout.tokens_per_frame, 0 if motion is None else motion.shape[1]),
            enabled=cfg.interaction_mask, backend=self.attention_backend,
        ).prepared(text.device)  # built here, outside the (possibly compiled) blocks
        without_motion = MaskSpec(layout, enabled=False)

        n_blocks = cfg.num_layers if video is not None else cfg.motion_layers
        motion_out = None
        for i, block in enumerate(self.transformer_blocks[:n_blocks]):
            use_motion = motion_h is not None and i < cfg.motion_layers
            video_h, text_h, m = block(
                video_h, text_h, motion_h if use_motion else None, emb, rope,
                with_motion if use_motion else without_motion, shared_mod,
            )
            if use_motion:
                motion_h = m
                if i == cfg.motion_layers - 1:
                    motion_out = self.motion_proj_out(self.motion_norm_out(motion_h, temb=emb))

        video_out = None
        if video is not None:
            h = self.proj_out(self.norm_out(self.norm_final(video_h), temb=emb))
            p = cfg.patch_size
            video_out = h.reshape(b, frames, height // p, width // p, -1, p, p)
            video_out = video_out.permute(0, 1, 4, 2, 5, 3, 6).reshape(b, frames, -1, height, width)  # a copy, not a view
        return DiTOutput(video=video_out, motion=motion_out)

    def _fill_timesteps(self, text, video, motion, t_video, t_motion) -> tuple[torch.Tensor, torch.Tensor]:
        b = text.shape[0]
        absent = torch.full((b,), self.config.num_train_timesteps - 1, device=text.device, dtype=torch.long)
        if t_video is None and t_motion is None:
            raise ValueError("give t_video and/or t_motion")
        if t_video is None:
            if video is not None:
                raise ValueError("video given without t_video")
            t_video = absent if self.config.asynchronous else t_motion
        if t_motion is None:
            if motion is not None:
                raise ValueError("motion given without t_motion")
            t_motion = absent if self.config.asynchronous else t_video
        return t_video.reshape(b), t_motion.reshape(b)

    # ------------------------------------------------------------------ parameters / weights

    def parameter_counts(self) -> dict[str, int]:
        """{'text_video': ..., 'motion': ...}: parameters of each branch (meta tensors fine)."""
        counts = {"text_video": 0, "motion": 0}
        for name, p in self.named_parameters():
            counts["motion" if _is_motion(name) else "text_video"] += p.numel()
        return counts

    @torch.no_grad()
    def load_cogvideox(self, folder: str | Path) -> dict[str, list[str]]:
        """Load a diffusers `CogVideoXTransformer3DModel` folder (config.json + safetensors) into
        the text/video branches. `folder` may be the transformer folder or a pipeline root.

        Every checkpoint tensor must exist here with the same shape, except that with
        asynchronous timesteps `time_embedding.linear_1.weight` (D_time, D) fills the t_video half
        of ours (D_time, 2D) and the t_motion half is zeroed (so the embedding starts equal to
        CogVideoX's). Returns {'loaded': [...], 'not_in_checkpoint': [...]} (the motion branch).
        """
        folder = _transformer_folder(Path(folder))
        self._check_cogvideox_config(json.loads((folder / "config.json").read_text()), folder)
        files = sorted(folder.glob("diffusion_pytorch_model*.safetensors"))
        if not files:
            raise FileNotFoundError(
                f"no diffusion_pytorch_model*.safetensors in {folder}; download the CogVideoX-5B transformer "
                "(e.g. `huggingface-cli download THUDM/CogVideoX-5b --include 'transformer/*' --local-dir DIR`)"
            )
        own = self.state_dict()
        loaded: list[str] = []
        for file in files:
            with safe_open(str(file), framework="pt") as f:
                for key in f.keys():
                    if key not in own:
                        raise KeyError(f"{file.name}: checkpoint tensor {key!r} has no counterpart in EgoTwinDiT")
                    src, dst = f.get_tensor(key), own[key]
                    if key == "time_embedding.linear_1.weight" and dst.shape[1] == 2 * src.shape[1]:
                        dst[:, : src.shape[1]].copy_(src)
                        dst[:, src.shape[1] :].zero_()
                    elif src.shape != dst.shape:
                        raise ValueError(f"{key}: checkpoint shape {tuple(src.shape)} != model {tuple(dst.shape)}")
                    else:
                        dst.copy_(src)
                    loaded.append(key)
        missing = sorted(k for k in own if k not in set(loaded) and not _is_motion(k))
        if missing:
            raise KeyError(f"the checkpoint in {folder} lacks text/video tensors: {missing[:8]}{' ...' if len(missing) > 8 else ''}")
        return {"loaded": loaded, "not_in_checkpoint": sorted(k for k in own if k not in set(loaded))}

    def _check_cogvideox_config(self, hf: dict, folder: Path) -> None:
        keys = ("num_layers", "num_attention_heads", "attention_head_dim", "time_embed_dim", "text_embed_dim",
                "in_channels", "out_channels", "patch_size", "use_rotary_positional_embeddings")
        bad = {k: (hf.get(k), getattr(self.config, k)) for k in keys if k in hf and hf[k] != getattr(self.config, k)}
        if hf.get("patch_size_t") is not None:
            bad["patch_size_t"] = (hf["patch_size_t"], None)
        if bad:
            raise ValueError(f"{folder}/config.json does not match the DiT config (checkpoint, ours): {bad}")


def _is_motion(name: str) -> bool:
    return name.startswith("motion_") or ".motion." in name


def _transformer_folder(folder: Path) -> Path:
    for candidate in (folder, folder / "transformer"):
        if (candidate / "config.json").is_file():
            return candidate
    raise FileNotFoundError(
        f"no CogVideoX transformer config.json in {folder} or {folder / 'transformer'}; pass the local diffusers "
        "folder of CogVideoX-5B (`huggingface-cli download THUDM/CogVideoX-5b --local-dir DIR`)"
    )


class BF16Forward(nn.Module):
    """`dit` with bf16 weights, fed bf16 inputs, returning fp32 predictions: the forward pass of
    training on CUDA (FSDP2's mixed precision casts parameters and inputs to bf16), at half the
    memory and a few times the speed of fp32 (a paper-size sampling step: 5.9 B parameters,
    ~12k tokens a pass)."""

    def __init__(self, dit: EgoTwinDiT) -> None:
        super().__init__()
        for p in dit.parameters():  # parameters only: FSDP2 leaves buffers in their dtype
            p.data = p.data.to(torch.bfloat16)
        self.dit = dit

    def forward(self, *args: torch.Tensor | None) -> DiTOutput:
        cast = [a.to(torch.bfloat16) if a is not None and a.is_floating_point() else a for a in args]
        out = self.dit(*cast)
        return DiTOutput(*(None if x is None else x.float() for x in (out.video, out.motion)))


def inference_dit(dit: EgoTwinDiT, device: str | torch.device) -> nn.Module:
    """`dit` in eval mode on `device`, computing as it trained there: through `BF16Forward` on CUDA
    (cast before the copy: half the bytes moved, no fp32 copy on the GPU), fp32 elsewhere (the CPU
    stages train in fp32)."""
    dit = dit.eval()
    if torch.device(device).type == "cuda":
        dit = BF16Forward(dit)
    return dit.to(device)
