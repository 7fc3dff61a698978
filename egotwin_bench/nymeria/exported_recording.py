"""The *exported recording* of an Aria RGB stream: writer and reader (DESIGN §3, docs/data_format.md).

No Python writer for Aria VRS exists, so `make-synthetic` (and anyone exporting real VRS frames)
stores the head camera's RGB stream as three files in ``recording_head/data/``:

* ``rgb.mp4``: H.264 (yuv420p) frames exactly as the sensor delivers them (fisheye, *raw*
  orientation: ``np.rot90(frame, k=3)`` is upright), frame i of the file = row i of the CSV.
* ``rgb_timestamps.csv``: columns ``frame_index, device_time_ns, timecode_ns`` (int64, the
  capture time of each frame on the Aria device clock and on TIME_CODE).
* ``rgb_calibration.json``: the FISHEYE624 ``camera-rgb`` calibration as written by
  `calibration_to_json` (keys ``label, model, params, width, height, valid_radius, max_angle,
  serial, T_device_camera`` — a row-major (4, 4) camera -> device matrix).

Usage::

    rec = ExportedRecording.open(seq_dir / "recording_head" / "data")
    rec.calibration            # projectaria_tools CameraCalibration
    rec.device_time_ns, rec.timecode_ns
    for i, frame in rec.iter_frames([0, 5, 9]): ...   # (H, W, 3) uint8 RGB, raw orientation
    frame = rec.frame(3)

Writing is atomic per file (temp name + rename, the MP4 last) and deterministic for identical
frames (fixed x264 settings, one encoder thread).
"""

from __future__ import annotations

import csv
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Sequence

import av
import cv2
import numpy as np
from projectaria_tools.core.calibration import CameraCalibration, CameraModelType
from projectaria_tools.core.sophus import SE3

from egotwin_bench.constants import X264_OPTIONS

RGB_FILE = "rgb.mp4"
TIMESTAMPS_FILE = "rgb_timestamps.csv"
CALIBRATION_FILE = "rgb_calibration.json"
TIMESTAMP_COLUMNS: tuple[str, str, str] = ("frame_index", "device_time_ns", "timecode_ns")
CALIBRATION_FORMAT = "egotwin-camera-calibration/1"


_BT601_COLORSPACES: tuple[int, ...] = (2, 5, 6)
"""FFmpeg AVColorSpace values decoded as BT.601: unspecified (what the writer leaves, and what
swscale then assumes), BT470BG, SMPTE170M."""
_LIMITED_RANGES: tuple[int, ...] = (0, 1)
"""FFmpeg AVColorRange values of limited ("MPEG", 16-235) range: unspecified, MPEG."""


def frame_to_rgb(frame) -> np.ndarray:
    """A decoded PyAV video frame -> (H, W, 3) uint8 RGB.

    BT.601 limited-range yuv420p with even sizes (what `ExportedRecordingWriter` writes) is
    converted by OpenCV's ``COLOR_YUV2RGB_I420``, the inverse of the writer's own conversion and
    ~10x faster than swscale's (0.3 vs ~2.5 ms per 704² frame; values differ from swscale's by
    < 1 level on average). Any other format goes through swscale (``to_ndarray("rgb24")``).
    """
    if (frame.format.name == "yuv420p" and frame.width % 2 == 0 and frame.height % 2 == 0
            and frame.colorspace in _BT601_COLORSPACES and frame.color_range in _LIMITED_RANGES):
        return cv2.cvtColor(frame.to_ndarray(), cv2.COLOR_YUV2RGB_I420)
    return frame.to_ndarray(format="rgb24")


class ExportedRecordingError(ValueError):
    """An exported recording is missing, malformed or inconsistent."""


def calibration_to_json(calibration) -> dict:
    """JSON-able dict of a projectaria_tools FISHEYE624 `CameraCalibration`."""
    if calibration.get_model_name() != CameraModelType.FISHEYE624:
        raise ExportedRecordingError(f"only FISHEYE624 calibrations are exported, got {calibration.get_model_name()}")
    width, height = (int(v) for v in calibration.get_image_size())
    radius = calibration.get_valid_radius()
    return {
        "format": CALIBRATION_FORMAT,
        "label": calibration.get_label(),
        "model": "FISHEYE624",
        "params": [float(v) for v in calibration.get_projection_params()],
        "width": width,
        "height": height,
        "valid_radius": None if radius is None else float(radius),
        "max_angle": float(calibration.get_max_solid_angle()),
        "serial": calibration.get_serial_number(),
        "T_device_camera": np.asarray(calibration.get_transform_device_camera().to_matrix(), dtype=float).tolist(),
    }


def calibration_from_json(d: dict):
    """Inverse of `calibration_to_json`: a projectaria_tools `CameraCalibration`."""
    try:
        if d["model"] != "FISHEYE624":
            raise ExportedRecordingError(f"unsupported camera model {d['model']!r} (expected FISHEYE624)")
        params = np.asarray(d["params"], dtype=np.float64)
        if params.shape != (15,):
            raise ExportedRecordingError(f"FISHEYE624 needs 15 parameters, got {params.shape}")
        T = np.asarray(d["T_device_camera"], dtype=np.float64)
        radius = d.get("valid_radius")
        return CameraCalibration(
            str(d["label"]), CameraModelType.FISHEYE624, params, SE3.from_matrix(T),
            int(d["width"]), int(d["height"]), None if radius is None else float(radius),
            float(d["max_angle"]), str(d.get("serial", "")),
        )
    except (KeyError, TypeError) as exc:
        raise ExportedRecordingError(f"calibration JSON lacks or mistypes a field: {exc}") from exc


def _atomic_write_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


class ExportedRecordingWriter:
    """Streams raw RGB frames into ``<data_dir>/rgb.mp4`` and, on `close`, the CSV and JSON.

    Args:
        data_dir: the ``recording_head/data`` folder (created).
        calibration: FISHEYE624 `CameraCalibration` of the frames (its image size is the frame size).
        fps: nominal frame rate written in the MP4 (timestamps live in the CSV).
        crf: x264 constant rate factor (lower = better quality, bigger files).
    """

    def __init__(self, data_dir: str | Path, calibration, fps: int, crf: int = 18):
        self.data_dir = Path(data_dir)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.calibration = calibration
        self.width, self.height = (int(v) for v in calibration.get_image_size())
        if self.width % 2 or self.height % 2:
            raise ExportedRecordingError(f"H.264 4:2:0 needs even image sizes, got {self.width}x{self.height}")
        self._tmp_mp4 = self.data_dir / f".{RGB_FILE}.tmp"
        # faststart: the index precedes the frames, so a truncated file still decodes its beginning.
        self._container = av.open(str(self._tmp_mp4), mode="w", format="mp4", options={"movflags": "+faststart"})
        stream = self._container.add_stream("libx264", rate=int(fps))
        stream.width, stream.height = self.width, self.height
        stream.pix_fmt = "yuv420p"
        # mbtree off and one thread (`X264_OPTIONS`): byte-identical files for identical frames
        # (with mbtree, x264 encoded identical frames differently under CPU load).
        stream.options = X264_OPTIONS | {"crf": str(crf), "preset": "veryfast", "tune": "grain"}
        stream.codec_context.thread_count = 1
        self._stream = stream
        self._device: list[int] = []
        self._timecode: list[int] = []
        self._closed = False

    def write(self, frame: np.ndarray, device_time_ns: int, timecode_ns: int) -> None:
        """Append one (H, W, 3) uint8 RGB frame (raw sensor orientation) and its two clock times."""
        if frame.shape != (self.height, self.width, 3) or frame.dtype != np.uint8:
            raise ExportedRecordingError(
                f"frame must be ({self.height}, {self.width}, 3) uint8, got {frame.shape} {frame.dtype}")
        if self._device and device_time_ns <= self._device[-1]:
            raise ExportedRecordingError("device times must increase strictly")
        # RGB -> YUV 4:2:0 (BT.601 limited range, what decoders assume) here rather than in
        # swscale: its SIMD paths can read a row's uninitialised padding for widths that are not
        # a multiple of the line alignment, which made identical frames encode differently.
        yuv = cv2.cvtColor(np.ascontiguousarray(frame), cv2.COLOR_RGB2YUV_I420)
        vf = av.VideoFrame.from_ndarray(yuv, format="yuv420p")
        vf.pts = len(self._device)
        for packet in self._stream.encode(vf):
            self._container.mux(packet)
        self._device.append(int(device_time_ns))
        self._timecode.append(int(timecode_ns))

    def close(self) -> None:
        """Flush the encoder and move all three files into place."""
        if self._closed:
            return
        for packet in self._stream.encode():
            self._container.mux(packet)
        self._container.close()
        self._closed = True
        rows = ["%s,%s,%s" % TIMESTAMP_COLUMNS]
        rows += [f"{i},{d},{t}" for i, (d, t) in enumerate(zip(self._device, self._timecode))]
        _atomic_write_text(self.data_dir / TIMESTAMPS_FILE, "\n".join(rows) + "\n")
        _atomic_write_text(self.data_dir / CALIBRATION_FILE, json.dumps(calibration_to_json(self.calibration), indent=1))
        os.replace(self._tmp_mp4, self.data_dir / RGB_FILE)

    def abort(self) -> None:
        """Drop the partial MP4 (nothing else has been written yet)."""
        if not self._closed:
            self._container.close()
            self._closed = True
        self._tmp_mp4.unlink(missing_ok=True)

    def __enter__(self) -> "ExportedRecordingWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


def write_exported_recording(data_dir: str | Path, frames, device_time_ns: Sequence[int],
                             timecode_ns: Sequence[int], calibration, fps: int, crf: int = 18) -> None:
    """Write an iterable of (H, W, 3) uint8 raw frames with per-frame clock times (see module doc)."""
    with ExportedRecordingWriter(data_dir, calibration, fps, crf) as writer:
        for frame, d, t in zip(frames, device_time_ns, timecode_ns, strict=True):
            writer.write(frame, d, t)


def read_timestamps_csv(path: str | Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(frame_index, device_time_ns, timecode_ns) int64 arrays of `rgb_timestamps.csv`."""
    path = Path(path)
    try:
        with path.open(newline="") as fh:
            reader = csv.DictReader(fh)
            if reader.fieldnames is None or not set(TIMESTAMP_COLUMNS) <= set(reader.fieldnames):
                raise ExportedRecordingError(f"{path}: needs columns {list(TIMESTAMP_COLUMNS)}, has {reader.fieldnames}")
            rows = [(int(r["frame_index"]), int(r["device_time_ns"]), int(r["timecode_ns"])) for r in reader]
    except (OSError, ValueError) as exc:
        raise ExportedRecordingError(f"{path}: unreadable ({exc})") from exc
    if not rows:
        raise ExportedRecordingError(f"{path}: no frames")
    arr = np.asarray(rows, dtype=np.int64)
    if not np.array_equal(arr[:, 0], np.arange(len(rows))):
        raise ExportedRecordingError(f"{path}: frame_index must be 0..N-1 in order")
    if np.any(np.diff(arr[:, 1]) <= 0):
        raise ExportedRecordingError(f"{path}: device_time_ns must increase strictly")
    return arr[:, 0], arr[:, 1], arr[:, 2]


@dataclass
class ExportedRecording:
    """An opened exported recording: calibration, per-frame clocks and lazy frame decoding."""

    data_dir: Path
    calibration: object
    """projectaria_tools `CameraCalibration` (FISHEYE624) of the raw frames."""
    frame_index: np.ndarray
    """(N,) int64, 0..N-1."""
    device_time_ns: np.ndarray
    """(N,) int64 Aria device time of each frame, strictly increasing."""
    timecode_ns: np.ndarray
    """(N,) int64 TIME_CODE of each frame."""
    _decoded_frames: int | None = field(default=None, repr=False)

    @classmethod
    def open(cls, data_dir: str | Path) -> "ExportedRecording":
        """Read the CSV and JSON of ``data_dir`` (the MP4 is decoded lazily)."""
        data_dir = Path(data_dir)
        missing = [n for n in (RGB_FILE, TIMESTAMPS_FILE, CALIBRATION_FILE) if not (data_dir / n).is_file()]
        if missing:
            raise ExportedRecordingError(f"{data_dir}: exported recording lacks {missing}")
        try:
            calib = calibration_from_json(json.loads((data_dir / CALIBRATION_FILE).read_text()))
        except json.JSONDecodeError as exc:
            raise ExportedRecordingError(f"{data_dir / CALIBRATION_FILE}: not valid JSON ({exc})") from exc
        idx, dev, tc = read_timestamps_csv(data_dir / TIMESTAMPS_FILE)
        rec = cls(data_dir, calib, idx, dev, tc)
        rec.check_frame_size()
        return rec

    def check_frame_size(self) -> None:
        """Raise `ExportedRecordingError` when the MP4's frame size is not the calibration's
        `get_image_size()` (undistorting with it would sample the wrong pixels: a 128² calibration
        on 64² video left 76 % of the output black, silently). A file whose header does not
        open is left to the decoder's own error."""
        width, height = (int(v) for v in self.calibration.get_image_size())
        try:
            with av.open(str(self.mp4_path)) as container:
                stream = container.streams.video[0]
                size = (int(stream.codec_context.width), int(stream.codec_context.height))
        except (av.error.FFmpegError, OSError, IndexError):
            return
        if size != (width, height):
            raise ExportedRecordingError(
                f"{self.mp4_path}: frames are {size[0]}x{size[1]}, but {CALIBRATION_FILE} describes a "
                f"{width}x{height} image; write the calibration of the exported frames (rescale it with "
                "projectaria_tools' CameraCalibration.rescale when the frames were resized)")

    @property
    def mp4_path(self) -> Path:
        return self.data_dir / RGB_FILE

    def __len__(self) -> int:
        return int(self.device_time_ns.shape[0])

    def iter_frames(self, indices: Sequence[int] | None = None) -> Iterator[tuple[int, np.ndarray]]:
        """Decode frames in increasing index order -> (index, (H, W, 3) uint8 RGB raw frame).

        `indices` (default: all) are deduplicated and sorted. A file with fewer decodable frames
        than the CSV lists (truncated MP4) raises `ExportedRecordingError` naming the first
        missing index, after yielding the frames it could decode.
        """
        wanted = sorted(set(int(i) for i in (range(len(self)) if indices is None else indices)))
        if not wanted:
            return
        if wanted[0] < 0 or wanted[-1] >= len(self):
            raise ExportedRecordingError(f"frame index out of range [0, {len(self)})")
        k = 0
        try:
            with av.open(str(self.mp4_path)) as container:
                stream = container.streams.video[0]
                stream.thread_type = "AUTO"
                width, height = (int(v) for v in self.calibration.get_image_size())
                for i, frame in enumerate(container.decode(stream)):
                    if i == wanted[k]:
                        if (frame.width, frame.height) != (width, height):
                            raise ExportedRecordingError(
                                f"{self.mp4_path}: frame {i} is {frame.width}x{frame.height}, the calibration "
                                f"{width}x{height}")
                        yield i, frame_to_rgb(frame)
                        k += 1
                        if k == len(wanted):
                            return
        except (av.error.FFmpegError, OSError) as exc:
            raise ExportedRecordingError(f"{self.mp4_path}: decoding failed at frame index {wanted[k]} ({exc})") from exc
        raise ExportedRecordingError(
            f"{self.mp4_path}: frame {wanted[k]} not in the video (it lists {len(self)} frames; "
            "the MP4 is truncated or shorter than rgb_timestamps.csv)")

    def frame(self, index: int) -> np.ndarray:
        """One (H, W, 3) uint8 raw RGB frame."""
        return next(self.iter_frames([index]))[1]

    def count_decodable_frames(self) -> int:
        """Number of frames the MP4 actually decodes to (stops quietly at a truncation)."""
        n = 0
        try:
            with av.open(str(self.mp4_path)) as container:
                for _ in container.decode(container.streams.video[0]):
                    n += 1
        except (av.error.FFmpegError, OSError):
            pass
        return n


def read_exported_recording(data_dir: str | Path) -> ExportedRecording:
    """`ExportedRecording.open` (the name the Nymeria RGB reader imports)."""
    return ExportedRecording.open(data_dir)
