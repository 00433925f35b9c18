"""Warnings reach people: each raised warning notifies the parties of its cell and hazard
(grid officer, district duty officer, departments) and follows them with an escalation
chain until someone acknowledges it.

- `policy`: the policies and acknowledgement deadlines, data in `escalation.toml`.
- `model`: the `Escalation` (one per warning) and `Notification` (one per party and
  warning) aggregates; a notification's events go out on
  `lifeline.monitor.notification.<party>.<event>`.
- `chains`: the use cases: start, step, stop and end a chain.
- `wiring`: how monitor runs them: its consumer of its own warnings, the field clock, the
  periodic watch of due steps, the read model's rows.
"""
