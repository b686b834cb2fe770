"""What the policy tests share (a module of its own: every test folder has a conftest.py,
so ``from conftest import`` would find whichever was imported first)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
POLICIES = REPO / "policies"
BAD = Path(__file__).resolve().parent / "bad"
LOAD_SF = 0.002
LOAD_SEED = 424242
CONSENTED = 12
"""How many customers consent to joint marketing (the partner's filter)."""


@dataclass
class PolicyEnv:
    home: Path
    target: object  # dataplat.policy.apply.Target
    policy: object  # the shipped Policy
    consented: frozenset[int]
