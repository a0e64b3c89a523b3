"""The webhook intake: authentication, the endpoint, and the group-commit writer."""
