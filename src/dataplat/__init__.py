"""dataplat: deploy a bank's data platform from an inventory, drive workloads and drills, report verdicts."""

__version__ = "0.1.0"
