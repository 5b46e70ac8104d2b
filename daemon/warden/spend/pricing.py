"""Hourly rates: a workspace's snapshot and its provider's pricing → USD per hour. Pure.

The platform's own cost figure wins where there is one (Coder's daily_cost credits);
then a flat rate for the template; then the sum of its resources' rates. A resource
the workspace has but the pricing does not name makes the rate unknown, never zero.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from warden.model import Workspace
from warden.policy.models import Pricing

HOURS_PER_DAY = Decimal(24)


@dataclass(frozen=True, slots=True)
class Rate:
    """USD per hour, or why it is not known."""

    per_hour: Decimal | None
    missing: str | None = None


def hourly_rate(ws: Workspace, pricing: Pricing | None) -> Rate:
    """What one hour of `ws` running costs under `pricing`."""
    if pricing is None:
        return Rate(None, f"no pricing for provider {ws.id.provider}")
    if ws.cost_units_per_day is not None and pricing.usd_per_credit is not None:
        return Rate(ws.cost_units_per_day * pricing.usd_per_credit / HOURS_PER_DAY)
    if ws.template is not None and ws.template in pricing.template_hour:
        return Rate(pricing.template_hour[ws.template])
    if ws.cost_units_per_day is not None and not ws.resources:
        return Rate(None, "no usd_per_credit for the platform's own cost figure")
    return _by_resources(ws.resources, pricing)


def _by_resources(resources: Any, pricing: Pricing) -> Rate:
    if not resources:
        return Rate(None, "no price: the platform reports no cost figure and no resources")
    total = Decimal(0)
    for amount_key, price in (("cpu", pricing.cpu_hour), ("memory_gib", pricing.memory_gib_hour)):
        amount = _decimal(resources.get(amount_key))
        if amount is None:
            continue
        if price is None:
            return Rate(None, f"no price for {amount_key}")
        total += amount * price
    gpus = _decimal(resources.get("gpus"))
    if gpus:
        gpu_type = str(resources.get("gpu_type") or "unknown")
        if gpu_type not in pricing.gpu_hour:
            return Rate(None, f"no price for GPU type {gpu_type}")
        total += gpus * pricing.gpu_hour[gpu_type]
    return Rate(total)


def _decimal(value: Any) -> Decimal | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        return Decimal(str(value))
    except ArithmeticError:
        return None
