"""Readers for one Nymeria sequence: layout, Xsens body motion, MPS trajectory, RGB, narrations.

Every reader is a pure function from files to arrays (with typed dataclasses); nothing here
aligns or resamples — that is `egotwin_bench.curation`.
"""
