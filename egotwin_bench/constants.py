"""One source of truth for the clip format (DESIGN §4) and the Xsens capture rate.

Every module that needs a frame rate, a clip length or an image size imports it from here.
"""

from __future__ import annotations

XSENS_FPS: int = 240
"""Xsens MVN capture rate in Hz (Nymeria `xdata.npz` `framerate`)."""

CLIP_SECONDS: float = 5.0
"""Length of one text-video-motion clip in seconds."""

VIDEO_FPS: int = 8
VIDEO_FRAMES: int = 41
"""Video: 41 frames at 8 FPS (frame k at k/8 s, so 41 frames span exactly 5 s)."""

VIDEO_SIZE: int = 480
"""Undistorted pinhole video frames are VIDEO_SIZE x VIDEO_SIZE RGB."""

MOTION_FPS: int = 16
MOTION_FRAMES: int = 81
"""Motion: 81 frames at 16 FPS; motion frame 2k is simultaneous with video frame k."""

NUM_JOINTS: int = 23
"""Xsens segments (see `egotwin_bench.skeleton`)."""

HEAD_CENTRIC_DIM: int = 288
ROOT_CENTRIC_DIM: int = 275

HAND_ORDER: tuple[str, str] = ("left", "right")
"""Order of the two hands in every (.., 2) hand-visibility array and hand-classifier logit."""

X264_OPTIONS: dict[str, str] = {"threads": "1", "x264-params": "mbtree=0"}
"""x264 options of every H.264 encode (`curation.video.encode_mp4`, `nymeria.exported_recording`).
Deterministic encoding: identical frames give identical bytes in any process (resumed runs
equal clean ones). Measured with the x264 of PyAV 18 wheels: its macroblock-tree rate control
(mbtree, on by default) gives different bitstreams for identical input from call to call, so
it is off; one thread. No `tune`: "film" doubled the encode time (22 vs 12 ms per 480² frame)
for the same size and PSNR (~0.8 MB, 41.6 dB on a synthetic clip)."""

assert (VIDEO_FRAMES - 1) / VIDEO_FPS == CLIP_SECONDS
assert (MOTION_FRAMES - 1) / MOTION_FPS == CLIP_SECONDS
assert MOTION_FPS == 2 * VIDEO_FPS
