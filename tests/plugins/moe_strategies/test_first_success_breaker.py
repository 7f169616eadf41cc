"""first-success reports the calls it cancels: a half-open breaker's probe that loses the race
frees its claim at once, instead of refusing the expert until the claim expires."""

from __future__ import annotations

import asyncio

from moe_core.testing import make_moe
from tests.conftest import user


async def test_a_probe_that_loses_the_race_frees_its_claim_and_says_nothing_bad():
    moe = make_moe(
        {
            "experts": {
                "primary": {"kind": "echo", "fail": "error"},
                "backup": {"kind": "echo", "prefix": "backup: "},
            },
            "gate": {"kind": "fixed", "expert": "primary"},
            "combiner": {"kind": "first-success", "experts": ["primary", "backup"]},
            "trackers": {
                "breaker": {
                    "kind": "circuit-breaker",
                    "failure_threshold": 1,
                    "reset_timeout_s": 0.05,
                    "probe_timeout_s": 60,
                },
                "stats": {"kind": "memory"},
            },
            "tracking": {"store": "memory"},
        }
    )
    async with moe:
        await moe.complete(user("one"))  # primary fails: its breaker opens
        primary = moe.experts["primary"].expert
        primary.options.fail, primary.options.delay_s = None, 0.2  # healthy again, but slower
        await asyncio.sleep(0.1)  # past the reset timeout: the next call is the probe
        for _ in range(2):
            answer = await moe.complete(user("two"))
            assert answer.result.content == "backup: two"
            # The probe was let through each time: its claim did not outlive the lost race.
            refusals = [f.error for f in answer.metadata.fallbacks if "probe" in f.error]
            assert refusals == []
        status = await moe.trackers["breaker"].fresh_status()
        assert status["primary"]["state"] != "closed" or status["primary"]["failures"] == 0
        # The cancelled calls are not counted as the expert's errors.
        assert moe.trackers["stats"].experts["primary"].errors == 1
