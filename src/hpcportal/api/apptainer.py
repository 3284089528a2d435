"""Apptainer image catalog: list and look up images; admins trigger a re-scan."""

from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel

from hpcportal.config import Settings
from hpcportal.dependencies import AdminUser, ApptainerDep, CurrentUser, strict_query
from hpcportal.errors import NotFound
from hpcportal.services.apptainer import (
    ApptainerCatalog,
    Image,
    ScanResult,
    filter_images,
)

router = APIRouter(prefix="/apptainer", tags=["apptainer"])


class ImageList(BaseModel):
    items: list[Image]
    total: int
    scanned_at: datetime | None


def create_catalog(settings: Settings) -> ApptainerCatalog:
    """The process's catalog; the app factory keeps it in ``AppServices``."""
    return ApptainerCatalog.from_settings(settings)


async def _fresh(catalog: ApptainerCatalog) -> ApptainerCatalog:
    """Re-scan in a worker thread when due, so reads of a fresh catalog stay async."""
    if catalog.needs_scan():
        await run_in_threadpool(catalog.refresh)
    return catalog


@router.get("/images", response_model=ImageList, dependencies=[strict_query("category", "q")])
async def list_images(
    _: CurrentUser,
    catalog: ApptainerDep,
    category: str | None = None,
    q: str | None = None,
) -> ImageList:
    """Images, optionally only one ``category`` or those matching the substring ``q``."""
    await _fresh(catalog)
    items = filter_images(catalog.images(), category=category, q=q)
    return ImageList(items=items, total=len(items), scanned_at=catalog.scanned_at)


@router.get("/images/{image_id}", response_model=Image, dependencies=[strict_query()])
async def get_image(image_id: str, _: CurrentUser, catalog: ApptainerDep) -> Image:
    await _fresh(catalog)
    image = catalog.get(image_id)
    if image is None:
        raise NotFound(f"No Apptainer image with id {image_id!r}.")
    return image


@router.post("/scan", response_model=ScanResult, dependencies=[strict_query()])
async def scan(_: AdminUser, catalog: ApptainerDep) -> ScanResult:
    """Re-read the image directories now; only new or changed images are inspected."""
    return await run_in_threadpool(catalog.scan)
