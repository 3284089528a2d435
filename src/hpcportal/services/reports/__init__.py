"""Usage reports: the usage store, report kinds, renderers, generation and schedules."""
