"""The admin console's services: plan, then apply (``plan``), and one planner per area
(``nodes``; QoS, accounts, reservations beside it). Everything runs as the
administrator's own Unix user; Slurm decides, the portal's admin role only shows."""
