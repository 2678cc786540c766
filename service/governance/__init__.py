"""Governance: approvals bound to identities."""
