"""The projection: what the stored events say about each SMS, built behind the answer.

`store` keeps events (CALLR's and the receiver's own) and queues them; `apply` is
the one way in to the records: every source of events (the projector, replay and
rebuild, CALLR's API answers, registrations) applies stored events through it,
under one error policy. `records` is the SQL of the message records, their history
and evidence; `projector` takes the events that wait and applies them, exactly
once each, in every `receiver serve` process and `receiver worker`.
"""
