"""The live web viewer behind `python -m townlet_agents.watch`.

`sim` steps the towns and turns their state into compact JSON frames, `follow` reads a
training run's files (newest checkpoint, metrics.jsonl), `server` streams frames to every
open page over one WebSocket each, and `static/` is the page itself (no internet needed).
"""
