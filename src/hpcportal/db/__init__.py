"""Persistence: the few things the portal keeps itself (revoked tokens, failed logins).

Everything about jobs and the cluster lives in Slurm; this database only holds state
that several portal replicas must share.
"""
