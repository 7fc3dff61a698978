"""Nymeria -> text-video-motion clips (DESIGN §4, docs/curation.md).

One concern per module: `trajectory` (pose interpolation), `alignment` (hand-eye), `undistort`
(fisheye -> upright pinhole), `windows` (clip policy), `visibility` (hand labels), `video`
(MP4 bytes), `shards` (Parquet schema + atomic writes), `sequence` (one sequence -> clips),
`splits`, `card`, `pipeline` (Ray Data driver with resume).
"""
