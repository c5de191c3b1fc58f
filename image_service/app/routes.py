"""HTTP routes of image_service. Uploads and generation tasks arrive with the images issue."""

from fastapi import APIRouter

router = APIRouter(prefix="/api/v1", tags=["images"])
