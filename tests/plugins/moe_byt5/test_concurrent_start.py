"""The ByT5 + Longformer service comes up with both experts ready, every time.

Both experts load at once in their own threads, and each imports transformers there. In a process
that has not imported transformers yet, that import raced and one expert often failed with
``ImportError: cannot import name 'AutoTokenizer' from 'transformers'``, leaving the gateway
``degraded``. The test process has imported transformers already (to build the tiny models),
which hides the race, so each start runs in a fresh interpreter, as ``moe serve`` does.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

STARTS = 5  # before the fix most such starts failed, so five passing is no accident

START_AND_REPORT = """
import asyncio, json, sys
from moe_core.orchestrator import MoE

async def main():
    moe = MoE.from_config(sys.argv[1])
    await moe.start(wait=True)
    print(json.dumps({name: slot.status() for name, slot in moe.experts.items()}))
    await moe.aclose()

asyncio.run(main())
"""


def test_both_experts_are_ready_after_every_start_in_a_fresh_process(
    config: dict[str, Any], tmp_path: Path
) -> None:
    path = tmp_path / "process.yaml"
    path.write_text(yaml.safe_dump(config))
    # Side by side, so the check takes about as long as one start.
    starts = [
        subprocess.Popen(
            [sys.executable, "-c", START_AND_REPORT, str(path)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(STARTS)
    ]
    try:
        for start in starts:
            out, err = start.communicate(timeout=60)
            assert start.returncode == 0, err
            experts = json.loads(out.splitlines()[-1])
            assert {name: status["state"] for name, status in experts.items()} == {
                "moe-expert-byt5": "ready",
                "moe-expert-longformer": "ready",
            }, experts
    finally:
        for start in starts:
            start.kill()
            start.wait()
