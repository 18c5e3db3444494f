"""Caller authentication: Easy Auth principals, Entra bearer tokens, gateway API keys, local dev mode."""
