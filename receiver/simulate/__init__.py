"""`receiver simulate`: realistic CALLR webhook traffic against a receiver, and what it should hold.

`plan` makes the SMS and the deliveries CALLR would send for them, `sender` sends
them the way CALLR does, and `report` says what was answered and what the receiver
should now hold.
"""

from receiver.simulate.plan import Delivery, Mix, Plan, parse_mix
from receiver.simulate.report import Report
from receiver.simulate.sender import ALGORITHMS, Signer, simulate

__all__ = ["ALGORITHMS", "Delivery", "Mix", "Plan", "Report", "Signer", "parse_mix", "simulate"]
