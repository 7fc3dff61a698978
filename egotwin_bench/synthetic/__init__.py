"""Synthetic Nymeria-format world with exact ground truth (`egotwin-bench make-synthetic`).

scene.py (rooms), body.py (subjects, motion on a 6 kHz master clock), script.py (activities),
camera.py (glasses, FISHEYE624 camera, ray table), render.py (vectorised ray casting),
narration.py (narration rows), faults.py (injected faults), writer.py (the Nymeria layout on
disk). See docs/synthetic.md.
"""
