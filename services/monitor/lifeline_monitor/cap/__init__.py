"""OASIS CAP 1.2, out and in: how warnings reach other agencies and public-alert channels,
and how theirs reach Lifeline.

One job per module: `schema` (the hardened parser and the OASIS schema), `mapping` (hazards
and colours to CAP's terms and back), `encode` (a warning as an alert), `feed` (the alerts a
warning's life publishes), `decode` (an alert read and checked), `geometry` (the cells an
area covers), `model` (an alert taken in, as an aggregate) and `intake` (taking it in).
"""
