"""A real, single-host Slurm cluster for development and integration tests.

``DevCluster(path).up()`` installs and starts munged, slurmdbd (on MariaDB),
slurmctld and one slurmd per simulated node, with every config and state file under
``path``; ``status()`` reports on it and ``down()`` stops what ``up`` started.
``DevCluster(path, release="24.11")`` (or ``"26.05"``) runs that Slurm from a cached
Debian root instead of the host's 22.05 (``releases.py``, ``roots.py``, ``wrappers.py``).
"""

from hpcportal.devcluster.cluster import DevCluster
from hpcportal.devcluster.errors import DevClusterError
from hpcportal.devcluster.users import DEMO_USERS, DemoUser

__all__ = ["DEMO_USERS", "DemoUser", "DevCluster", "DevClusterError"]
