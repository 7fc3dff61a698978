"""Model configuration: one source of truth for every network dimension (DESIGN §6).

`EgoTwinConfig.load("paper")` / `load("tiny")` read the TOML files shipped in
`egotwin_model/configs/`; `load(path)` reads any file of the same layout. A TOML file has the
sections ``[motion_vae]``, ``[dit]``, ``[diffusion]``, ``[guidance]``; keys left out take the
dataclass defaults below (the paper's values). Other sections (e.g. ``[train]``, ``[encoders]``)
are kept verbatim in `EgoTwinConfig.extra` for the training / sampling code.

Clip geometry comes from `egotwin_bench.constants`: 81 motion frames -> 21 motion latents
(causal 4x), 41 video frames -> 11 video latent frames (CogVideoX causal 4x).
"""

from __future__ import annotations

import dataclasses
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from egotwin_bench.constants import HEAD_CENTRIC_DIM, MOTION_FRAMES, ROOT_CENTRIC_DIM, VIDEO_FRAMES

CONFIG_DIR = Path(__file__).parent / "configs"
TEMPORAL_COMPRESSION: int = 4
"""Both VAEs compress time 4x causally: T frames -> 1 + (T - 1) / 4 latents."""


def latent_length(frames: int, compression: int = TEMPORAL_COMPRESSION) -> int:
    """Number of latents a causal `compression`x temporal encoder makes of `frames` frames."""
    if (frames - 1) % compression:
        raise ValueError(f"{frames} frames is not 1 + {compression}k")
    return 1 + (frames - 1) // compression


REPRESENTATION_DIMS: dict[str, int] = {"head_centric": HEAD_CENTRIC_DIM, "root_centric": ROOT_CENTRIC_DIM}
"""Per-frame feature size of each motion representation (`egotwin_bench.motion`)."""

MOTION_LATENTS: int = latent_length(MOTION_FRAMES)  # 21
VIDEO_LATENT_FRAMES: int = latent_length(VIDEO_FRAMES)  # 11


@dataclass(frozen=True)
class MotionVAEConfig:
    """1D causal-conv motion VAE (paper appendix A). Widths in channels, lengths in frames."""

    in_dim: int = HEAD_CENTRIC_DIM
    """Per-frame feature size: 288 head-centric, 275 root-centric."""
    latent_dim: int = 64
    """C_m: channels of one motion latent."""
    encoder_channels: tuple[int, ...] = (512, 512, 1024, 2048)
    """Output width of each DownBlock (the decoder's UpBlocks mirror it in reverse)."""
    layers_per_down_block: int = 4
    layers_per_up_block: int = 5
    num_resampling_blocks: int = 2
    """The first this-many Down/UpBlocks halve/double time (2 -> 4x)."""
    mid_layers: int = 2
    norm_groups: int = 32
    kl_weight: float = 1e-4
    """lambda_KL of eq. 1."""

    @property
    def mid_channels(self) -> int:
        return self.encoder_channels[-1]

    @property
    def temporal_compression(self) -> int:
        return 2**self.num_resampling_blocks


@dataclass(frozen=True)
class DiTConfig:
    """Triple-branch MM-DiT. Text/video fields mirror diffusers' `CogVideoXTransformer3DModel`
    config (same names and meaning) so CogVideoX weights load unchanged."""

    # --- text / video branches (CogVideoX-5B) ---
    num_layers: int = 42
    num_attention_heads: int = 48
    attention_head_dim: int = 64
    time_embed_dim: int = 512
    text_embed_dim: int = 4096
    max_text_seq_length: int = 226
    in_channels: int = 16
    out_channels: int = 16
    patch_size: int = 2
    sample_height: int = 60
    sample_width: int = 90
    sample_frames: int = 49
    temporal_compression_ratio: int = 4
    spatial_interpolation_scale: float = 1.875
    temporal_interpolation_scale: float = 1.0
    use_rotary_positional_embeddings: bool = True
    """3D RoPE on video queries/keys (CogVideoX-5B)."""
    use_video_sincos_positions: bool = False
    """Add CogVideoX's fixed 3D sin-cos table to video tokens. CogVideoX-2B uses it, 5B (RoPE)
    does not; off by default so the pretrained 5B features are not shifted."""
    flip_sin_to_cos: bool = True
    freq_shift: int = 0
    activation_fn: str = "gelu-approximate"
    timestep_activation_fn: str = "silu"
    norm_elementwise_affine: bool = True
    norm_eps: float = 1e-5
    attention_bias: bool = True
    dropout: float = 0.0
    # --- motion branch ---
    motion_channels: int = 64
    """C_m: motion latent channels (= MotionVAEConfig.latent_dim)."""
    motion_length: int = MOTION_LATENTS
    motion_dim: int = 768
    """D_m: width of the motion branch."""
    motion_layers: int = 21
    """The motion branch exists in blocks 0 .. motion_layers-1 (the lower half)."""
    motion_ff_mult: int = 4
    motion_adaln: Literal["single", "per_layer"] = "single"
    """'single': one shared modulation MLP + a learned per-block table (PixArt-alpha adaLN-single);
    'per_layer': one modulation Linear per block (DiT). 'single' matches the paper's ~300M."""
    # --- EgoTwin designs (all off = VidMLD) ---
    interaction_mask: bool = True
    asynchronous: bool = True
    num_train_timesteps: int = 1000

    @property
    def inner_dim(self) -> int:
        """D: the joint attention width (heads x head dim)."""
        return self.num_attention_heads * self.attention_head_dim

    def __post_init__(self) -> None:
        if not 0 <= self.motion_layers <= self.num_layers:
            raise ValueError(f"motion_layers {self.motion_layers} must lie in [0, num_layers={self.num_layers}]")
        if self.motion_adaln not in ("single", "per_layer"):
            raise ValueError(f"motion_adaln must be 'single' or 'per_layer', got {self.motion_adaln!r}")


@dataclass(frozen=True)
class DiffusionConfig:
    """Noise schedule = CogVideoX-5B's `CogVideoXDDIMScheduler` config (v-prediction,
    zero-terminal SNR, trailing timesteps); see `egotwin_model.diffusion`."""

    num_train_timesteps: int = 1000
    beta_start: float = 0.00085
    beta_end: float = 0.012
    beta_schedule: str = "scaled_linear"
    prediction_type: Literal["v_prediction", "epsilon"] = "v_prediction"
    rescale_betas_zero_snr: bool = True
    snr_shift_scale: float = 1.0
    timestep_spacing: str = "trailing"
    set_alpha_to_one: bool = True
    clip_sample: bool = False
    num_inference_steps: int = 50

    def scheduler_kwargs(self) -> dict[str, Any]:
        """Keyword arguments of `diffusers.CogVideoXDDIMScheduler`."""
        d = dataclasses.asdict(self)
        d.pop("num_inference_steps")
        return d


@dataclass(frozen=True)
class GuidanceConfig:
    """Classifier-free guidance scales (paper §4.2): w_t text, w_v video, w_m motion."""

    text_scale: float = 6.0
    video_scale: float = 4.0
    motion_scale: float = 4.0


@dataclass(frozen=True)
class Variant:
    """One row of the paper's Table 1/2: the three EgoTwin designs on (True) or off.

    MR off -> the root-centric representation (Guo et al.'s standard one, 275-d) instead of the
    head-centric reformulation; IM off -> full joint attention (no interaction mask, fused SDPA);
    AD off -> one timestep for video and motion and vanilla CFG at sampling.
    """

    motion_reformulation: bool = True
    interaction_mask: bool = True
    asynchronous: bool = True
    description: str = ""

    @property
    def representation(self) -> str:
        return "head_centric" if self.motion_reformulation else "root_centric"

    def switches(self) -> tuple[str, bool, bool]:
        """(representation, interaction_mask, asynchronous) as stored in `EgoTwinConfig`."""
        return self.representation, self.interaction_mask, self.asynchronous


VARIANTS: dict[str, Variant] = {
    "egotwin": Variant(description="full model"),
    "wo_mr": Variant(motion_reformulation=False, description="w/o MR: root-centric motion"),
    "wo_im": Variant(interaction_mask=False, description="w/o IM: no interaction mask"),
    "wo_ad": Variant(asynchronous=False, description="w/o AD: synchronous diffusion, vanilla CFG"),
    "vidmld": Variant(False, False, False, description="VidMLD baseline: all three designs off"),
}
"""The paper's baseline and ablations (§4.1 "Baseline", §4.4, Table 2) by name."""


@dataclass(frozen=True)
class EgoTwinConfig:
    """Everything the networks need; `extra` keeps other TOML sections for train/sample."""

    name: str = "paper"
    representation: str = "head_centric"
    """Motion representation (`egotwin_bench.motion.REPRESENTATIONS` key): sets MotionVAE in_dim."""
    motion_vae: MotionVAEConfig = field(default_factory=MotionVAEConfig)
    dit: DiTConfig = field(default_factory=DiTConfig)
    diffusion: DiffusionConfig = field(default_factory=DiffusionConfig)
    guidance: GuidanceConfig = field(default_factory=GuidanceConfig)
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.representation not in REPRESENTATION_DIMS:
            raise ValueError(f"unknown representation {self.representation!r}; known: {sorted(REPRESENTATION_DIMS)}")
        if self.motion_vae.in_dim != REPRESENTATION_DIMS[self.representation]:
            raise ValueError(
                f"motion_vae.in_dim {self.motion_vae.in_dim} does not fit representation {self.representation!r} "
                f"({REPRESENTATION_DIMS[self.representation]} features per frame)"
            )
        if self.dit.motion_channels != self.motion_vae.latent_dim:
            raise ValueError(
                f"dit.motion_channels ({self.dit.motion_channels}) must equal motion_vae.latent_dim "
                f"({self.motion_vae.latent_dim})"
            )
        if self.dit.num_train_timesteps != self.diffusion.num_train_timesteps:
            raise ValueError("dit.num_train_timesteps must equal diffusion.num_train_timesteps")

    @classmethod
    def from_dict(cls, data: dict[str, Any], name: str = "custom") -> "EgoTwinConfig":
        data = dict(data)
        data_sections = {k: dict(v) for k, v in data.items() if isinstance(v, dict)}
        sections = {"motion_vae": MotionVAEConfig, "dit": DiTConfig, "diffusion": DiffusionConfig,
                    "guidance": GuidanceConfig}
        kwargs: dict[str, Any] = {"name": data.pop("name", name)}
        if "representation" in data:
            kwargs["representation"] = data.pop("representation")
        for key, klass in sections.items():
            kwargs[key] = section_from_dict(klass, data.pop(key, {}), key)
        rep = kwargs.get("representation")
        if rep in REPRESENTATION_DIMS and kwargs["motion_vae"].in_dim != REPRESENTATION_DIMS[rep]:
            if "in_dim" not in data_sections.get("motion_vae", {}):  # follow the representation
                kwargs["motion_vae"] = dataclasses.replace(kwargs["motion_vae"], in_dim=REPRESENTATION_DIMS[rep])
        kwargs["extra"] = data
        return cls(**kwargs)

    @classmethod
    def from_toml(cls, path: str | Path) -> "EgoTwinConfig":
        path = Path(path)
        with path.open("rb") as f:
            return cls.from_dict(tomllib.load(f), name=path.stem)

    @classmethod
    def load(cls, name_or_path: str | Path) -> "EgoTwinConfig":
        """A shipped config by name (`paper`, `tiny`) or a TOML file path."""
        p = Path(name_or_path)
        if p.suffix == ".toml" or p.exists():
            if not p.is_file():
                raise FileNotFoundError(f"config file {p} does not exist")
            return cls.from_toml(p)
        shipped = CONFIG_DIR / f"{name_or_path}.toml"
        if not shipped.is_file():
            names = sorted(q.stem for q in CONFIG_DIR.glob("*.toml"))
            raise FileNotFoundError(f"unknown config {name_or_path!r}: give a .toml path or one of {names}")
        return cls.from_toml(shipped)

    def with_representation(self, representation: str) -> "EgoTwinConfig":
        """Same config for another motion representation (`root_centric` = "w/o MR")."""
        if representation not in REPRESENTATION_DIMS:
            raise ValueError(f"unknown representation {representation!r}; known: {sorted(REPRESENTATION_DIMS)}")
        vae = dataclasses.replace(self.motion_vae, in_dim=REPRESENTATION_DIMS[representation])
        return dataclasses.replace(self, representation=representation, motion_vae=vae)

    def with_variant(self, *, interaction_mask: bool | None = None, asynchronous: bool | None = None) -> "EgoTwinConfig":
        """Ablation switches ("w/o IM", "w/o AD")."""
        changes = {k: v for k, v in (("interaction_mask", interaction_mask), ("asynchronous", asynchronous)) if v is not None}
        return dataclasses.replace(self, dit=dataclasses.replace(self.dit, **changes))

    def with_ablation(self, name: str) -> "EgoTwinConfig":
        """The named paper variant (`VARIANTS`: egotwin, wo_mr, wo_im, wo_ad, vidmld) of this config."""
        if name not in VARIANTS:
            raise ValueError(f"unknown variant {name!r}; known: {sorted(VARIANTS)}")
        v = VARIANTS[name]
        cfg = self.with_representation(v.representation) if v.representation else self
        return cfg.with_variant(interaction_mask=v.interaction_mask, asynchronous=v.asynchronous)

    @property
    def variant(self) -> str | None:
        """Name of the `VARIANTS` entry this config's three switches match (None if none does)."""
        for name, v in VARIANTS.items():
            if v.switches() == (self.representation, self.dit.interaction_mask, self.dit.asynchronous):
                return name
        return None

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (TOML/JSON-able) that `from_dict` reads back to an equal config."""
        d = dataclasses.asdict(self)
        extra = d.pop("extra")
        return {**d, **extra}


def section_from_dict(klass: type, values: dict[str, Any], section: str) -> Any:
    """Build the dataclass `klass` from a TOML/JSON dict (lists -> tuples); unknown keys are an error."""
    names = {f.name: f for f in dataclasses.fields(klass)}
    unknown = sorted(set(values) - set(names))
    if unknown:
        raise ValueError(f"[{section}] has unknown keys {unknown}; known: {sorted(names)}")
    values = {k: tuple(v) if isinstance(v, list) else v for k, v in values.items()}
    return klass(**values)
