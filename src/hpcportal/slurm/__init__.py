"""The one boundary to Slurm.

Only this package runs Slurm commands (``executor``) and reads their output
(``wire`` and ``parse``). Everything above it sees the typed models in ``models``.
"""
