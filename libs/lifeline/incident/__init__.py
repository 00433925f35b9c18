"""The Incident: one model that dispatch writes and review replays.

`state.IncidentState` is a pure fold over `lifeline.incident.v1.IncidentEvent` messages
(one step per event type in `steps`, its parts in `parts`); review uses it alone to replay
a history. `aggregate.Incident` is the event-sourced aggregate dispatch keeps: its commands
check the lifecycle rules and record events, which the same fold applies. `response` turns
a plan into what a grade needs; `deadlines` says when orders fall due.
"""
