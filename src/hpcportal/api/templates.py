"""Placeholder: being written (see the issue); the router is mounted by the app factory."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter()
