"""Slurm's job mail, caught: the ``MailProg`` program the portal ships.

slurmctld runs its ``MailProg`` as ``MailProg -s "<subject>" <recipient>`` for every
``--mail-type`` event; the subject is all the mail says (``subject.py`` parses it
strictly into a ``SlurmMail``). ``mailprog.py`` is the program (console script
``hpcportal-mailprog``): it posts the subject to the portal's ``/api/v1/slurm-mail``
with the shared secret and exits 0 at once, whatever happens, because slurmctld
waits for it. ``mailprog.sh`` does the same in bash for a slurmctld host (or
chroot) without the portal's Python. Standard library only: the program runs where
slurmctld runs, not where the portal does.
"""
