"""This plugin's trained artefacts (gates and scorers), in moe_core's no-pickle ``.npz`` format."""

from __future__ import annotations

import functools
from pathlib import Path

from moe_core import artefacts as _core
from moe_core.artefacts import Artefact, load

PACKAGED = Path(__file__).parent / "artefacts"
DISTRIBUTIONS = ("scikit-learn", "transformers", "torch", "moe-domain-llms")

save = functools.partial(_core.save, distributions=DISTRIBUTIONS)

__all__ = ["PACKAGED", "Artefact", "load", "save"]
