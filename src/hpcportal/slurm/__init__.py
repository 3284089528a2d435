"""The one boundary to Slurm.

Only this package runs Slurm commands (``executor``) and reads their output
(``wire``, ``parse`` and ``action_output``). Everything above it asks the adapter
(``adapter``: typed reads) and acts through ``actions`` (typed submit, control, time
limit and efficiency, as the user), and sees only the typed models and results.
"""
