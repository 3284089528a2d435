"""hpcportal: a web portal for Slurm HPC clusters."""

__version__ = "0.1.0"
