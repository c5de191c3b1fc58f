"""HTTP routes of mobile_service. Records, sync and publishing arrive with the records issue."""

from fastapi import APIRouter

router = APIRouter(prefix="/api/v1", tags=["records"])
