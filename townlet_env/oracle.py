"""A scripted oracle: a baseline policy, written by hand, that reads the true world state.

It exists to put a number on "what good play looks like" on every level, so a learned
agent's survival can be read against a competent baseline (and against random and
always-WAIT play), and so a broken world pack shows up as an oracle that cannot survive.

Each step, for every town at once: each meter below its threshold is a *need* whose
urgency is weight x (threshold - meter) / threshold (energy and health are lethal, so
they weigh most; satiation and mood feed them through cascades). For each need the
oracle scores the deployed affordances that serve it (a meaningful gain on that meter),
open when the agent would arrive and until the interaction completes, safe (their costs
leave energy and health above a floor), and affordable; the most urgent need that has
such an affordance becomes the target. A need whose only servers are unaffordable sends
the agent to earn (Job or Labor, when open). With no target the agent WAITs (the
cheapest action). It walks greedily along x then y (towns have no obstacles), presses
INTERACT on the target and keeps pressing until a multi-tick interaction completes.

It lives with the env because it reads privileged state (every town's grid, meters and
clock, the world's tables), which a learning agent only sees through observations.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from .schema import DOWN, HOURS_PER_DAY, INTERACT, LEFT, METER, MONEY_EPS, NUM_AFFORDANCES, NUM_METERS, RIGHT, UP, WAIT

ENERGY, HEALTH, MONEY = METER["energy"], METER["health"], METER["money"]


@dataclass
class OracleTuning:
    """Need thresholds and weights, in METERS order (energy, hygiene, satiation, money,
    mood, social, health, fitness). Chosen by measuring survival on every level."""

    threshold: list[float] = field(default_factory=lambda: [0.45, 0.35, 0.45, 0.30, 0.35, 0.35, 0.55, 0.45])
    weight: list[float] = field(default_factory=lambda: [10.0, 2.0, 6.0, 2.5, 3.0, 2.0, 10.0, 3.0])
    min_gain: float = 0.1
    """An affordance serves a need only if a full use raises that meter by at least this."""
    price_cost: float = 0.5
    """Score lost per money unit ($100) of an affordance's full price."""
    step_cost: float = 0.01
    """Score lost per step of walking."""
    safety_floor: float = 0.05
    """Never start an interaction whose costs would leave energy or health below this."""
    reserve: float = 0.10
    """Money (1.0 = $100) kept back for energy and health: other needs may only spend above it."""


class OraclePolicy:
    """`policy(obs, action_mask) -> actions [N]` for a `TownletVectorEnv(torch_output=True)`.

    The observation is ignored: the oracle reads `env.state` (positions, meters, hour,
    interaction progress, each town's own grid) and `env.params` (effects, prices,
    opening hours), so it plays every level, fully or partially observed, alike.
    """

    def __init__(self, env, tuning: OracleTuning | None = None):
        self.env = env
        p = env.params
        self.tuning = t = tuning or OracleTuning()
        if not len(t.threshold) == len(t.weight) == NUM_METERS:  # one per meter, in schema.METERS order
            raise ValueError(f"OracleTuning needs {NUM_METERS} thresholds and weights (schema.METERS order)")
        dev = env.device
        aff = slice(0, NUM_AFFORDANCES)                                   # rows of real affordances
        ticks = p.ticks[aff].to(dev)
        self.ticks = ticks.long()                                         # [A]
        # [A, meters] a full use: every tick's gain (money net of the price) plus the bonus
        self.gain = p.tick_gain[aff].to(dev) * ticks[:, None] + p.bonus[aff].to(dev)
        self.tick_price = p.tick_price[aff].to(dev)                       # [A]
        self.price = self.tick_price * ticks                              # [A] full use
        self.open_at = p.open_hours[aff].to(dev)                          # [A, hours]
        self.threshold = torch.tensor(t.threshold, device=dev)
        self.weight = torch.tensor(t.weight, device=dev)
        self.serves = self.gain >= t.min_gain                            # [A, meters]
        self.earns = self.gain[:, MONEY] > 0                             # [A]
        self.step_energy = float(p.action_cost[UP, ENERGY])
        self.grid_size = p.grid_size
        self.cell_to_padded = p.cell_to_padded.to(dev)
        self.codes = torch.arange(NUM_AFFORDANCES, device=dev)
        self.side = torch.ones(NUM_METERS, device=dev)
        self.side[MONEY] = 0.0                                           # money is scored by price

    def _positions(self, grid):
        """[N, A] cell of each affordance in each town's own grid, and [N, A] deployed."""
        town = grid[:, self.cell_to_padded].long()                     # [N, cells]
        present = town[:, :, None] == self.codes[None, None, :]         # [N, cells, A]
        return present.float().argmax(dim=1), present.any(dim=1)

    def targets(self):
        """[N] target affordance code per town (-1: none, WAIT) and [N, A] affordance cells."""
        s, t = self.env.state, self.tuning
        g = self.grid_size
        pos, deployed = self._positions(s.grid)
        dist = ((pos % g) - (s.cell % g)[:, None]).abs() + ((pos // g) - (s.cell // g)[:, None]).abs()
        # open when the agent arrives and on the tick the interaction would complete
        arrive = (s.hour[:, None] + dist) % HOURS_PER_DAY
        finish = (arrive + self.ticks[None, :] - 1) % HOURS_PER_DAY
        rows = self.codes[None, :].expand_as(dist)
        usable = deployed & self.open_at[rows, arrive] & self.open_at[rows, finish]

        x = s.meters                                                    # [N, meters]
        after = (x[:, None, :] + self.gain[None]).clamp(0.0, 1.0)       # [N, A, meters]
        walk = dist.float() * self.step_energy
        for lethal in (ENERGY, HEALTH):
            drop = self.gain[None, :, lethal] < 0
            usable &= ~drop | (after[:, :, lethal] - walk > t.safety_floor)
        money = x[:, MONEY:MONEY + 1] + MONEY_EPS
        affordable = money >= self.price[None, :]
        spare = money >= self.price[None, :] + t.reserve

        urgency = self.weight * ((self.threshold - x) / self.threshold).clamp(min=0.0)  # [N, meters]
        effect = after - x[:, None, :]
        side = (effect * (0.1 + urgency[:, None, :]) * self.side).sum(-1)  # [N, A]
        base = side - t.price_cost * self.price[None, :] - t.step_cost * dist.float()
        neg = torch.finfo(base.dtype).min

        # earning: the best open, safe Job/Labor (needs nothing but time)
        can_earn = usable & self.earns[None, :]
        earn_score = torch.where(can_earn, effect[:, :, MONEY] + base, neg)
        earn_target = earn_score.argmax(-1)
        earn_ok = can_earn.any(-1)

        best_urgency = torch.full_like(urgency[:, 0], 0.0)
        target = torch.full_like(s.cell, -1)
        for m in range(NUM_METERS):
            serving = usable & self.serves[None, :, m]
            ok = serving & (affordable if m in (ENERGY, HEALTH) else spare)
            score = torch.where(ok, effect[:, :, m] + base, neg)
            here_target = torch.where(ok.any(-1), score.argmax(-1),
                                      torch.where(serving.any(-1) & earn_ok, earn_target, -1))
            better = (urgency[:, m] > best_urgency) & (here_target >= 0)
            target = torch.where(better, here_target, target)
            best_urgency = torch.where(better, urgency[:, m], best_urgency)
        return target, pos

    def __call__(self, obs, action_mask):
        s = self.env.state
        g = self.grid_size
        target, pos = self.targets()
        tcell = pos.gather(1, target.clamp(min=0)[:, None])[:, 0]
        dx = tcell % g - s.cell % g
        dy = tcell // g - s.cell // g
        move = torch.where(dx < 0, LEFT, torch.where(dx > 0, RIGHT,
                           torch.where(dy < 0, UP, torch.where(dy > 0, DOWN, INTERACT))))
        action = torch.where(target >= 0, move, WAIT)
        # finish a multi-tick interaction that is under way and can still be paid
        here = s.grid.gather(1, self.cell_to_padded[s.cell][:, None])[:, 0].long()
        on_affordance = here < NUM_AFFORDANCES
        tick_price = self.tick_price[here.clamp(max=NUM_AFFORDANCES - 1)]
        going_on = (s.progress > 0) & (s.current == here) & on_affordance \
            & (s.meters[:, MONEY] + MONEY_EPS >= tick_price)
        action = torch.where(going_on, INTERACT, action)
        allowed = action_mask.gather(1, action[:, None])[:, 0]
        return torch.where(allowed, action, WAIT)
