"""Sending SMS through the receiver: requests made durable, and the sender that calls CALLR."""
