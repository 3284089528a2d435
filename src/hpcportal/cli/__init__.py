"""Command-line interface of hpcportal."""
