"""The CALLR protocol: envelopes, SMS objects, statuses and signatures. Pure functions, no I/O."""
