"""A MediaServer's CPU share in its heartbeat, and its weight in the MediaServer choice."""

from __future__ import annotations

import random

from procall.routing import Candidate, CpuGauge, ServerInfo, ServerRole, choose_two_random


def test_the_cpu_gauge_reads_the_share_of_one_core_since_the_last_reading() -> None:
    now, used = [100.0], [10.0]
    gauge = CpuGauge(step=5, clock=lambda: now[0], cpu=lambda: used[0])
    now[0], used[0] = 102.0, 10.9  # 0.9 s of CPU in 2 s
    assert gauge() == 45
    now[0], used[0] = 103.0, 11.92  # 1.02 s in 1 s: several threads may exceed one core
    assert gauge() == 100
    assert gauge() == 100  # no time passed: the last figure stands


def _media(name: str, load: int, cpu: int) -> Candidate:
    info = ServerInfo(name, ServerRole.MEDIA, "h:1", epoch=1, capacity=40, load=load)
    return Candidate(ServerInfo(**{**info.__dict__, "cpu_percent": cpu}))


def test_a_media_server_with_a_busy_core_counts_as_full_before_its_capacity() -> None:
    busy = _media("m-busy", load=4, cpu=90)  # few calls, but its core is nearly full
    idle = _media("m-idle", load=20, cpu=30)
    assert busy.utilization == 0.9 and idle.utilization == 0.5
    # an idle core's few percent do not decide between idle servers: the calls do
    assert _media("m-quiet", load=1, cpu=10).utilization == 1 / 40
    rng = random.Random(7)
    assert {choose_two_random([busy, idle], rng).server.server_id for _ in range(20)} == {"m-idle"}
