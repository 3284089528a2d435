"""Operating several servers: ``cluster_config.yaml``, rendering the tools' configurations,
discovering and joining servers, and the cluster's status (``hpcportal cluster``)."""
