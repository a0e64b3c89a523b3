"""Forwarding inbound SMS to the internal handlers: routing, the outbox dispatcher, retries."""
