"""How a batch of evaluation lives went: what each agent pressed INTERACT on, and how and
with which meters its life ended. It answers "what kills my agent?" (a long life that
dies with hygiene and social at zero never learned the Shower and the Bar; one that dies
broke, or standing still, never went back to work), and it reads only what every agent
sees: the observation, its action and the step's flags.
"""

from __future__ import annotations

import torch

from townlet_env import AFFORDANCES, METERS, WorldPack
from townlet_env.schema import DOLLARS_PER_UNIT, INTERACT, LETHAL_METERS, METER, NUM_AFFORDANCES, WAIT

# A death after this many WAITs in a row counts as "gave up": the agent stood still while
# its meters ran out, instead of walking to an affordance.
GAVE_UP_WAITS = 20


def cheapest_rescue(pack: WorldPack) -> dict[str, float]:
    """Per lethal meter, the least money (in meter units, $100 = 1) that buys a deployed
    affordance raising it: the instant price, or with temporal mechanics the price of one
    tick that raises it. A death with less money than that for the meter that ran out is a
    death while broke. 0.0 when nothing deployed raises the meter (money could not help)."""
    out = {}
    for meter in LETHAL_METERS:
        prices = [
            (a.tick_price if pack.temporal_mechanics else a.price) / DOLLARS_PER_UNIT
            for a in pack.affordances if a.name in pack.deployed
            if (a.per_tick if pack.temporal_mechanics else a.effects).get(meter, 0.0) > 0
        ]
        out[meter] = min(prices, default=0.0)
    return out


def affordance_codes(layout, obs: torch.Tensor) -> torch.Tensor:
    """[N] int64: the affordance under each agent (NUM_AFFORDANCES for none), decoded from
    the observation's `affordance` part in either encoding."""
    part = obs[:, layout["affordance"].slice]
    if layout.one_hot:
        return part.argmax(dim=1)  # the last index is "none"
    return part[:, 0].long().clamp(max=NUM_AFFORDANCES)  # a floor cell's code is NUM_AFFORDANCES


class LifeRecord:
    """Accumulates over the first life of each of N towns (later lives are not counted).

    `rescue`: `cheapest_rescue(pack)`, for the share of deaths while broke; without it
    that share is not reported."""

    def __init__(self, layout, num_towns: int, device, rescue: dict[str, float] | None = None):
        self.layout = layout
        self.meters = layout["meters"].slice
        self.rescue = None if rescue is None else torch.tensor([rescue[m] for m in LETHAL_METERS], device=device)
        self.broke = torch.zeros(num_towns, dtype=torch.bool, device=device)
        self.waits = torch.zeros(num_towns, dtype=torch.long, device=device)  # WAITs in a row, up to the end
        self.gave_up = torch.zeros(num_towns, dtype=torch.bool, device=device)
        self.ended_once = torch.zeros(num_towns, dtype=torch.bool, device=device)
        self.presses = torch.zeros(num_towns, NUM_AFFORDANCES + 1, device=device)
        self.meters_at_end = torch.zeros(num_towns, len(METERS), device=device)
        self.lethal_at_end = torch.zeros(num_towns, len(LETHAL_METERS), dtype=torch.bool, device=device)
        self.truncated = torch.zeros(num_towns, dtype=torch.bool, device=device)
        self.rows = torch.arange(num_towns, device=device)

    def acted(self, obs: torch.Tensor, action: torch.Tensor, live: torch.Tensor) -> None:
        """Count INTERACT by the towns still in their first life, on the affordance they stand on."""
        pressed = ((action == INTERACT) & live).to(self.presses.dtype)
        self.presses.index_put_((self.rows, affordance_codes(self.layout, obs)), pressed, accumulate=True)
        self.waits = torch.where(live, (self.waits + 1) * (action == WAIT), self.waits)

    def ended(self, last_obs: torch.Tensor, terminated: torch.Tensor, truncated: torch.Tensor,
              first_end: torch.Tensor) -> None:
        """Record the meters of the lives ending now for the first time (`first_end` [N] bool);
        `last_obs` is each town's observation of its final step."""
        end = first_end.unsqueeze(1)
        meters = last_obs[:, self.meters]
        self.meters_at_end = torch.where(end, meters, self.meters_at_end)
        lethal = meters[:, [METER[m] for m in LETHAL_METERS]] <= 0
        self.lethal_at_end = torch.where(end, lethal, self.lethal_at_end)
        self.truncated = torch.where(first_end, truncated & ~terminated, self.truncated)
        self.ended_once |= first_end
        self.gave_up = torch.where(first_end, self.waits >= GAVE_UP_WAITS, self.gave_up)
        if self.rescue is not None:
            broke = (lethal & (meters[:, METER["money"], None] < self.rescue)).any(dim=1)
            self.broke = torch.where(first_end, broke, self.broke)

    def summary(self) -> dict:
        """Means over towns: INTERACT presses per life by affordance (a multi-tick
        interaction counts each tick), meters on the last step, and how the lives ended."""
        per_life = self.presses[:, :NUM_AFFORDANCES].mean(dim=0).tolist()
        meters = self.meters_at_end.mean(dim=0).tolist()
        zeroed = self.lethal_at_end & ~self.truncated.unsqueeze(1)  # lethal meters at 0 in a death
        alone = zeroed & (zeroed.sum(dim=1, keepdim=True) == 1)
        died = self.ended_once & ~self.truncated
        return {
            "interacts_per_life": {name: round(x, 3) for name, x in zip(AFFORDANCES, per_life)},
            "meters_at_end": {name: round(x, 4) for name, x in zip(METERS, meters)},
            "ended_by": {
                "step_limit": _fraction(self.truncated),
                **{name: _fraction(alone[:, i]) for i, name in enumerate(LETHAL_METERS)},
                "both": _fraction(zeroed.sum(dim=1) > 1),
            },
            "deaths": self._deaths(died),
        }

    def _deaths(self, died: torch.Tensor) -> dict:
        """Over the lives that ended in death only (survivors would dilute the means): their
        meters on the last step, the share that died broke, the share that gave up."""
        count = int(died.sum())
        if count == 0:
            return {"count": 0}
        meters = self.meters_at_end[died].mean(dim=0).tolist()
        out = {"count": count, "meters_at_death": {name: round(x, 4) for name, x in zip(METERS, meters)},
               "gave_up": _fraction(self.gave_up[died])}
        if self.rescue is not None:
            out["broke"] = _fraction(self.broke[died])
        return out


def _fraction(flags: torch.Tensor) -> float:
    return round(float(flags.double().mean()), 4)
