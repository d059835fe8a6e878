"""Accounts, their permissions, passwords and tokens."""
