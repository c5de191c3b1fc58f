"""Copy the images of a local storage directory into the S3 bucket, so a deployment can switch
``IMAGE_STORAGE`` from ``local`` to ``s3`` (docs/api.md §8, README "Deployment").

    IMAGE_STORAGE=s3 S3_BUCKET=... python -m image_service.migrate_storage [--dry-run]

Reads the same settings as image_service (its ``.env`` files and the environment):
``IMAGE_STORAGE_DIR`` is the source, the ``S3_*`` keys the target. Keys are the same in both
stores, so the database needs no change. Idempotent: an object already in the bucket is skipped
(S3 writes are all or nothing), so it can be run again after an interruption, and once more
after the switch for images uploaded meanwhile. It never deletes the local files.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from common.config import load_settings
from common.errors import AppError
from image_service.app.config import ImageSettings
from image_service.app.s3_storage import S3Storage
from image_service.app.storage import LocalDiskStorage

SERVICE = "image_service"


async def migrate(settings: ImageSettings, dry_run: bool) -> tuple[int, int]:
    """(copied, already there); with ``dry_run``, copied counts what would be."""
    source = LocalDiskStorage(settings.image_storage_dir)
    target = S3Storage(settings)
    await target.open()
    copied = present = 0
    try:
        for key in source.stored_keys():
            if await target.exists(key):
                present += 1
                continue
            if not dry_run:
                await target.put_file(key, source.path_for(key))  # the S3 backend reads, never moves
            copied += 1
    finally:
        await target.close()
    return copied, present


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dry-run", action="store_true", help="count what would be copied, copy nothing")
    args = parser.parse_args(argv)
    settings = load_settings(ImageSettings, SERVICE)
    if settings.image_storage != "s3":
        print("Set IMAGE_STORAGE=s3 and the S3_* settings of the target bucket first.", file=sys.stderr)
        return 2
    where = f"{settings.s3_bucket} at {settings.s3_endpoint_url or 'AWS S3'}"
    print(f"Copying images from {settings.image_storage_dir} to the bucket {where}")
    try:
        copied, present = asyncio.run(migrate(settings, args.dry_run))
    except AppError as exc:
        print(f"Stopped: {exc.detail}. Run the command again once the store answers.", file=sys.stderr)
        return 1
    if args.dry_run:
        print(f"{copied} to copy, {present} already in the bucket (dry run: nothing copied)")
    else:
        print(f"{copied} copied, {present} already in the bucket")
    return 0


if __name__ == "__main__":
    sys.exit(main())
