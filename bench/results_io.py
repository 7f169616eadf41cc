"""Writing a benchmark's results: the same machine facts and timestamp in every JSON file."""

from __future__ import annotations

import json
import os
import platform
import time
from pathlib import Path
from typing import Any


def write_results(report: dict[str, Any], out: Path) -> None:
    """Add where and when it was measured, write ``out`` as JSON, and say so."""
    report.setdefault("machine", {"cpu_count": os.cpu_count(), "python": platform.python_version()})
    report.setdefault("timestamp", time.strftime("%Y-%m-%dT%H:%M:%S%z"))
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {out}")
