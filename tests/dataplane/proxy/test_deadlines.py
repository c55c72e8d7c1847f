"""The deadline arithmetic behind the one moving timer, stepped through time."""

from __future__ import annotations

import pytest

from dataplane.proxy.deadlines import Deadlines
from dataplane.proxy.errors import ErrorKind


@pytest.mark.parametrize(
    ("deadlines", "steps"),
    [
        # deadlines: (total_s, start_s, idle_s) from t0=1000.0;
        # steps: (now, last_write, head_sent, expected next deadline, expected expiry)
        pytest.param((10.0, None, 2.0), [
            (1002.0, 1000.0, False, 1002.0, ErrorKind.IDLE_TIMEOUT),
            (1002.0, 1001.5, False, 1003.5, None),
            (1003.5, 1003.0, True, 1005.0, None),
            (1010.0, 1009.0, True, 1010.0, ErrorKind.TIMEOUT),
        ], id="idle-moves-total-wins"),
        pytest.param((None, 1.0, None), [
            (1000.5, 1000.0, False, 1001.0, None),
            (1001.0, 1000.0, False, 1001.0, ErrorKind.RESPONSE_START_TIMEOUT),
            (1005.0, 1000.0, True, None, None),
        ], id="response-start-void-after-head"),
        pytest.param((None, None, None), [(1e9, 1000.0, False, None, None)], id="none-set"),
    ],
)
def test_deadlines_over_time(deadlines, steps):
    class Probe(Deadlines):
        __slots__ = ("head_sent",)

        def _rearm(self):  # no loop here: the pure parts only
            pass

    probe = Probe(loop=None)
    probe.t0 = 1000.0
    probe._set_deadlines(*deadlines)
    for now, last_write, head_sent, want_next, want_expired in steps:
        probe.last_write = last_write
        assert probe.next_deadline(head_sent) == want_next, f"at {now}"
        assert probe.expired(now, head_sent) == want_expired, f"at {now}"
