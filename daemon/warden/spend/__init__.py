"""Spend: what running workspaces cost, accrued from observed running time."""
