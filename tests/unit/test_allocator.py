"""gearcam/allocator.py: a process that handles frames keeps their buffers in its heap."""

from __future__ import annotations

import os

from tests.allocation import faults_in_a_process, need_glibc

KEEP = "from gearcam.allocator import keep_frame_buffers\nassert keep_frame_buffers()"


def test_glibcs_own_thresholds_fault_in_every_frames_tensor_and_gearcams_do_not() -> None:
    need_glibc()
    on_glibcs = faults_in_a_process()
    assert on_glibcs >= 1000  # about 149 a tensor: what the thresholds are for
    assert faults_in_a_process(KEEP) * 10 <= on_glibcs


def test_an_operators_glibc_tunables_stand() -> None:
    need_glibc()
    check = "from gearcam.allocator import keep_frame_buffers\nassert not keep_frame_buffers()"
    env = {**os.environ, "GLIBC_TUNABLES": "glibc.malloc.perturb=0"}  # changes nothing: glibc's own thresholds
    assert faults_in_a_process(check, env=env) >= 1000
