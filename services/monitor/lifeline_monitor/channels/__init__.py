"""Delivery channels: a notification leaves monitor for a person's own channels (webhook,
chat, email, SMS, voice), in the order configured for that party, and the acknowledgement
comes back through a signed link or an SMS reply.

- `config`: the channels file (`LIFELINE_CHANNELS`), read and checked.
- `message`: what a notification says on each channel.
- `adapters`: one adapter per kind of channel behind one interface.
- `delivery`: tries a party's channels in order, with retries, recording each attempt.
- `links`: signed, expiring acknowledgement links and SMS reply codes.
- `endpoint`: monitor's small HTTP endpoint for links and the gateway's replies.
"""
