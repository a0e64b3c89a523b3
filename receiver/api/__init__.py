"""The JSON API under /api/v1, behind the API bearer tokens."""
