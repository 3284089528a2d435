"""Thin HTTP routers: parse input, call a service, return its model."""
