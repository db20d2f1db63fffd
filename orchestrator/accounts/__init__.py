"""User accounts: passwords, sign-in with its throttle, and who is asking (a key or a user)."""
