"""Clip videos as in-memory H.264 MP4 bytes (PyAV), and back."""

from __future__ import annotations

import io
from dataclasses import dataclass
from fractions import Fraction

import av
import numpy as np

from egotwin_bench.constants import VIDEO_FPS, X264_OPTIONS

CRF: int = 18
"""x264 constant rate factor of `encode_mp4`'s default (visually lossless; ~0.9 MB per clip)."""
PRESET: str = "veryfast"
"""x264 preset of `encode_mp4`'s default. The curation passes its own `VideoConfig`."""


@dataclass(frozen=True)
class VideoConfig:
    """x264 settings of the curated clips (part of the config fingerprint).

    Measured on one synthetic 41-frame 480² clip (2 shared cores, so times are relative):
    veryfast/18 11.9 ms per frame, 930 kB, 39.4 dB; superfast/20 8.3 ms, 969 kB, 39.2 dB;
    ultrafast/21 3.8 ms, 926 kB, 38.3 dB (and 4x faster to decode: no CABAC, no deblocking).
    Every setting is deterministic (byte-identical re-encodes).
    """

    preset: str = "superfast"
    """x264 preset; "ultrafast" for the fastest curation at ~1 dB lower PSNR."""
    crf: int = 20
    """x264 constant rate factor (lower = better quality, bigger shards)."""


def encode_mp4(frames: np.ndarray, fps: int = VIDEO_FPS, crf: int = CRF, preset: str = PRESET) -> bytes:
    """(T, H, W, 3) uint8 RGB -> H.264 MP4 bytes (yuv420p, every frame kept, fixed fps)."""
    frames = np.ascontiguousarray(frames, dtype=np.uint8)
    if frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"frames must be (T, H, W, 3) uint8, got {frames.shape}")
    buf = io.BytesIO()
    with av.open(buf, mode="w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height = frames.shape[2], frames.shape[1]
        stream.pix_fmt = "yuv420p"
        stream.time_base = Fraction(1, fps)
        stream.options = X264_OPTIONS | {"preset": preset, "crf": str(crf)}
        stream.codec_context.thread_count = 1
        for i, frame in enumerate(frames):
            vf = av.VideoFrame.from_ndarray(frame, format="rgb24")
            vf.pts = i
            container.mux(stream.encode(vf))
        container.mux(stream.encode())
    return buf.getvalue()


def decode_mp4(data: bytes) -> np.ndarray:
    """MP4 bytes -> (T, H, W, 3) uint8 RGB."""
    with av.open(io.BytesIO(data), mode="r") as container:
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    if not frames:
        raise ValueError("the MP4 holds no video frames")
    return np.stack(frames)
