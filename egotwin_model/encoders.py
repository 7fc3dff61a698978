"""Frozen encoders around the diffusion transformer: T5 text encoder and CogVideoX 3D causal VAE.

Both load from a local folder in the diffusers layout of ``THUDM/CogVideoX-5b``::

    <weights>/tokenizer/      T5 tokenizer (spiece.model or tokenizer.json + tokenizer_config.json)
    <weights>/text_encoder/   T5-XXL encoder (config.json + *.safetensors)
    <weights>/vae/            AutoencoderKLCogVideoX (config.json + diffusion_pytorch_model*.safetensors)
    <weights>/transformer/    CogVideoXTransformer3DModel (read by `egotwin_model.dit.load_cogvideox`)

Nothing is downloaded at run time. The tiny config needs no downloaded weight: a Unigram
tokenizer trained offline on the dataset's narrations (`train_tokenizer`), a small randomly
initialised `T5EncoderModel` (`build_tiny_text_encoder`) and a small `AutoencoderKLCogVideoX`
trained by `egotwin-model train --stage video-vae` (`build_tiny_video_vae`), all saved in the
same layout under ``RUN_DIR/encoders/`` so that every later step loads them like real weights.

Video tensors: pixels are uint8 ``(B, F, H, W, 3)`` RGB; latents are ``(B, F', C_v, h, w)``
(the DiT layout, frames first) already multiplied by the VAE's ``scaling_factor``; F' =
(F - 1) / 4 + 1 and h = H / 8. The model may work at a smaller square size than the clips'
480 x 480 (the tiny config uses 64 x 64): `VideoVAE.encode` resizes (antialiased bilinear) to
``size`` and `VideoVAE.decode` returns frames at ``size`` (`resize_frames` brings them back).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from safetensors import safe_open

WEIGHTS_HINT = (
    "get them from https://huggingface.co/THUDM/CogVideoX-5b (e.g. `huggingface-cli download "
    "THUDM/CogVideoX-5b --local-dir DIR`) and pass DIR; for the tiny config run "
    "`egotwin-model train --stage video-vae` first, which writes RUN_DIR/encoders/"
)
TEXT_LENGTH: int = 226
"""L_t: prompts are padded/truncated to 226 T5 tokens (CogVideoX's `max_sequence_length`)."""


class MissingWeightsError(FileNotFoundError):
    """A pretrained-weights file or folder is missing; the message names it and where to get it."""


def _require(folder: Path, patterns: Sequence[str], what: str) -> Path:
    """Check that `folder` exists and holds a file for each glob pattern (alternatives split by '|')."""
    if not folder.is_dir():
        raise MissingWeightsError(f"{what}: folder {folder} not found; {WEIGHTS_HINT}")
    for pattern in patterns:
        if not any(any(folder.glob(p)) for p in pattern.split("|")):
            raise MissingWeightsError(
                f"{what}: no file matching {pattern!r} in {folder}; {WEIGHTS_HINT}"
            )
    return folder


def check_weights_folder(root: str | Path, parts: Sequence[str] = ("tokenizer", "text_encoder", "vae")) -> Path:
    """Validate the CogVideoX-style folder layout for `parts` and return `root` as a Path."""
    root = Path(root)
    required = {
        "tokenizer": ("tokenizer_config.json", "spiece.model|tokenizer.json"),
        "text_encoder": ("config.json", "*.safetensors|*.bin"),
        "vae": ("config.json", "diffusion_pytorch_model*.safetensors|diffusion_pytorch_model*.bin"),
        "transformer": ("config.json", "diffusion_pytorch_model*.safetensors|diffusion_pytorch_model*.bin"),
    }
    for part in parts:
        _require(root / part, required[part], f"{part} weights")
    return root


def _checkpoint_keys(folder: Path, stem: str) -> set[str] | None:
    """Tensor names of the ``<stem>*.safetensors`` files in `folder` (headers only); None if none."""
    index = folder / f"{stem}.safetensors.index.json"
    files = ([folder / f for f in sorted(set(json.loads(index.read_text())["weight_map"].values()))]
             if index.is_file() else sorted(folder.glob(f"{stem}*.safetensors")))
    if not files:
        return None
    keys: set[str] = set()
    for file in files:
        if not file.is_file():
            raise MissingWeightsError(f"{file} (named in {index.name}) not found; {WEIGHTS_HINT}")
        with safe_open(str(file), framework="pt") as f:
            keys.update(f.keys())
    return keys


def _check_loading(model: torch.nn.Module, info: dict, folder: Path, stem: str) -> None:
    """Strict loading: `from_pretrained` only warns about missing / unexpected tensors (a missing
    one stays randomly initialised; diffusers 0.42 does not even report it for a sharded file),
    so the checkpoint's names are compared with the model's here; any difference is an error."""
    bad = {k: sorted(info.get(k) or ()) for k in ("missing_keys", "unexpected_keys", "mismatched_keys")}
    stored = _checkpoint_keys(folder, stem)
    if stored is not None:
        tied = set(getattr(model, "_tied_weights_keys", None) or ())  # saved once (T5's embed_tokens)
        expected = set(model.state_dict()) - tied
        bad["missing_keys"] = sorted(set(bad["missing_keys"]) | (expected - stored))
        bad["unexpected_keys"] = sorted(set(bad["unexpected_keys"]) | (stored - expected - tied))
    bad = {k: v for k, v in bad.items() if v}
    if bad:
        detail = "; ".join(f"{k.replace('_', ' ')}: {v[:5]}{' ...' if len(v) > 5 else ''}" for k, v in bad.items())
        raise ValueError(f"the weights in {folder} do not fit its config.json ({detail}); {WEIGHTS_HINT}")


# ----------------------------------------------------------------------------------- text


class TextEncoder:
    """T5 encoder + tokenizer: prompts -> (B, 226, D_t) float32 embeddings (frozen, eval mode)."""

    def __init__(self, tokenizer, model, max_length: int = TEXT_LENGTH) -> None:
        self.tokenizer = tokenizer
        self.model = model.eval().requires_grad_(False)
        self.max_length = max_length

    @property
    def dim(self) -> int:
        return int(self.model.config.d_model)

    @classmethod
    def from_folder(cls, root: str | Path, dtype: torch.dtype = torch.float32, device: str | torch.device = "cpu") -> "TextEncoder":
        """Load ``root/tokenizer`` and ``root/text_encoder`` (CogVideoX layout)."""
        # lazy: transformers (~1 s to import) only when T5 is loaded (`egotwin_model.run` imports this module without it)
        from transformers import AutoTokenizer, T5EncoderModel

        root = check_weights_folder(root, ("tokenizer", "text_encoder"))
        tokenizer = AutoTokenizer.from_pretrained(root / "tokenizer")
        model, info = T5EncoderModel.from_pretrained(root / "text_encoder", torch_dtype=dtype,
                                                    output_loading_info=True)
        _check_loading(model, info, root / "text_encoder", "model")
        if len(tokenizer) > model.config.vocab_size:
            raise ValueError(f"{root / 'tokenizer'}: {len(tokenizer)} tokens but the text encoder embeds only "
                             f"{model.config.vocab_size}")
        return cls(tokenizer, model.to(device))

    def save(self, root: str | Path) -> None:
        """Write ``root/tokenizer`` and ``root/text_encoder`` so `from_folder` reads them back."""
        root = Path(root)
        self.tokenizer.save_pretrained(root / "tokenizer")
        self.model.save_pretrained(root / "text_encoder")

    def tokenize(self, texts: Sequence[str]) -> torch.Tensor:
        """Token ids (B, max_length), padded with the pad id and truncated like CogVideoX."""
        out = self.tokenizer(
            list(texts), padding="max_length", max_length=self.max_length, truncation=True,
            add_special_tokens=True, return_tensors="pt",
        )
        return out.input_ids

    @torch.no_grad()
    def encode(self, texts: Sequence[str]) -> torch.Tensor:
        """(B, max_length, D_t) float32 last hidden states; the empty prompt "" is the null text."""
        ids = self.tokenize(texts).to(self.model.device)
        return self.model(ids).last_hidden_state.float()


def train_tokenizer(texts: Sequence[str], vocab_size: int = 512):
    """A T5-style Unigram tokenizer trained offline on `texts` (pad 0, eos 1, unk 2; eos appended).

    Returns a transformers `PreTrainedTokenizerFast`, so it saves and loads like T5's.
    """
    # lazy: tokenizers + transformers (~1 s to import) only when a tokenizer is trained
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    specials = ["<pad>", "</s>", "<unk>"]
    tok = Tokenizer(models.Unigram())
    tok.normalizer = normalizers.Sequence([normalizers.NFKC(), normalizers.Lowercase()])
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    tok.decoder = decoders.Metaspace()
    trainer = trainers.UnigramTrainer(vocab_size=vocab_size, special_tokens=specials, unk_token="<unk>")
    texts = [t for t in texts if t.strip()]
    if not texts:
        raise ValueError("train_tokenizer: no non-empty narration to train on")
    tok.train_from_iterator(texts, trainer=trainer)
    tok.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", 1)])
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, pad_token="<pad>", eos_token="</s>", unk_token="<unk>",
        padding_side="right", model_max_length=TEXT_LENGTH,
    )


@dataclass(frozen=True)
class TinyTextEncoderConfig:
    """A small T5 encoder (random init) for CPU runs; `d_model` must equal the DiT's D_t."""

    d_model: int = 64
    num_layers: int = 2
    num_heads: int = 2
    d_ff: int = 128
    vocab_size: int = 512
    seed: int = 0


def build_tiny_text_encoder(texts: Sequence[str], cfg: TinyTextEncoderConfig) -> TextEncoder:
    """Tokenizer trained on `texts` + a seeded random `T5EncoderModel` of the real architecture."""
    from transformers import T5Config, T5EncoderModel  # lazy: transformers (~1 s to import) only when T5 is built

    tokenizer = train_tokenizer(texts, cfg.vocab_size)
    config = T5Config(
        vocab_size=len(tokenizer), d_model=cfg.d_model, d_kv=cfg.d_model // cfg.num_heads,
        d_ff=cfg.d_ff, num_layers=cfg.num_layers, num_heads=cfg.num_heads,
        pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id,
        decoder_start_token_id=tokenizer.pad_token_id,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        model = T5EncoderModel(config)
    return TextEncoder(tokenizer, model)


# ----------------------------------------------------------------------------------- video


def resize_frames(frames: torch.Tensor, size: int) -> torch.Tensor:
    """Resize float frames (..., C, H, W) to (..., C, size, size), antialiased bilinear."""
    if frames.shape[-1] == size and frames.shape[-2] == size:
        return frames
    lead = frames.shape[:-3]
    flat = frames.reshape(-1, *frames.shape[-3:])
    down = size < frames.shape[-1]
    out = F.interpolate(flat, size=(size, size), mode="bilinear", align_corners=False, antialias=down)
    return out.reshape(*lead, *out.shape[-3:])


def frames_to_tensor(frames: np.ndarray | torch.Tensor, size: int) -> torch.Tensor:
    """uint8 (B, F, H, W, 3) RGB -> float (B, 3, F, size, size) in [-1, 1] (the VAE's input)."""
    x = torch.as_tensor(frames)
    if x.dtype != torch.uint8 or x.ndim != 5 or x.shape[-1] != 3:
        raise ValueError(f"expected uint8 frames (B, F, H, W, 3), got {tuple(x.shape)} {x.dtype}")
    x = x.permute(0, 1, 4, 2, 3).float() / 127.5 - 1.0  # (B, F, 3, H, W)
    x = resize_frames(x, size)
    return x.permute(0, 2, 1, 3, 4).contiguous()


def tensor_to_frames(x: torch.Tensor, size: int | None = None) -> torch.Tensor:
    """float (B, 3, F, H, W) in [-1, 1] -> uint8 (B, F, size, size, 3) (size None: unchanged)."""
    x = x.float().permute(0, 2, 1, 3, 4)  # (B, F, 3, H, W)
    if size is not None:
        x = resize_frames(x, size)
    x = ((x.clamp(-1, 1) + 1.0) * 127.5).round().to(torch.uint8)
    return x.permute(0, 1, 3, 4, 2).contiguous()


class VideoVAE:
    """CogVideoX 3D causal VAE: uint8 frames <-> scaled latents (B, F', C_v, h, w)."""

    def __init__(self, vae, size: int) -> None:
        self.vae = vae.eval().requires_grad_(False)
        self.size = size

    @property
    def scaling_factor(self) -> float:
        return float(self.vae.config.scaling_factor)

    @property
    def latent_channels(self) -> int:
        return int(self.vae.config.latent_channels)

    @classmethod
    def from_folder(cls, root: str | Path, size: int, dtype: torch.dtype = torch.float32, device: str | torch.device = "cpu") -> "VideoVAE":
        """Load ``root/vae`` with diffusers' `AutoencoderKLCogVideoX.from_pretrained`."""
        from diffusers import AutoencoderKLCogVideoX  # lazy: diffusers (~1 s to import) only when the VAE is loaded

        root = check_weights_folder(root, ("vae",))
        vae, info = AutoencoderKLCogVideoX.from_pretrained(root / "vae", torch_dtype=dtype, low_cpu_mem_usage=False,
                                                           output_loading_info=True)
        _check_loading(vae, info, root / "vae", "diffusion_pytorch_model")
        return cls(vae.to(device), size)

    @torch.no_grad()
    def encode(self, frames: np.ndarray | torch.Tensor) -> torch.Tensor:
        """uint8 (B, F, H, W, 3) -> posterior-mean latents x scaling_factor, (B, F', C_v, h, w)."""
        p = next(self.vae.parameters())
        x = frames_to_tensor(frames, self.size).to(device=p.device, dtype=p.dtype)
        z = self.vae.encode(x).latent_dist.mean * self.scaling_factor
        return z.permute(0, 2, 1, 3, 4).float()

    @torch.no_grad()
    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """(B, F', C_v, h, w) scaled latents -> uint8 (B, F, size, size, 3) on the CPU."""
        p = next(self.vae.parameters())
        z = latents.permute(0, 2, 1, 3, 4).to(device=p.device, dtype=p.dtype) / self.scaling_factor
        return tensor_to_frames(self.vae.decode(z).sample.cpu(), None)


@dataclass(frozen=True)
class TinyVideoVAEConfig:
    """A small `AutoencoderKLCogVideoX` (4x temporal, 8x spatial compression) for CPU runs."""

    latent_channels: int = 4
    block_out_channels: tuple[int, ...] = (16, 32, 32, 32)
    layers_per_block: int = 1
    norm_num_groups: int = 8
    size: int = 64
    seed: int = 0


def build_tiny_video_vae(cfg: TinyVideoVAEConfig):
    """A seeded randomly initialised `AutoencoderKLCogVideoX` of `cfg`'s small size."""
    from diffusers import AutoencoderKLCogVideoX  # lazy: diffusers (~1 s to import) only when the VAE is built

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        return AutoencoderKLCogVideoX(
            block_out_channels=tuple(cfg.block_out_channels), latent_channels=cfg.latent_channels,
            layers_per_block=cfg.layers_per_block, norm_num_groups=cfg.norm_num_groups,
            sample_height=cfg.size, sample_width=cfg.size, scaling_factor=1.0,
        )


def load_encoders(folder: str | Path, text_length: int, video_size: int, device: str | torch.device = "cpu",
                  dtype: torch.dtype = torch.float32) -> tuple[TextEncoder, VideoVAE]:
    """Text encoder (prompts padded to `text_length`) and video VAE (frames at `video_size`)."""
    text = TextEncoder.from_folder(folder, dtype=dtype, device=device)
    text.max_length = text_length
    return text, VideoVAE.from_folder(folder, video_size, dtype=dtype, device=device)
