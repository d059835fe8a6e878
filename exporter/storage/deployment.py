"""The deployment's identity, which names its share of a storage both deployments may use."""

from __future__ import annotations

import uuid

from exporter.db import Pool

SELECT_DEPLOYMENT = "SELECT id FROM deployment"


async def deployment_id(pool: Pool) -> uuid.UUID:
    """The identity of the deployment whose database ``pool`` reaches (migration 0009)."""
    value = await pool.fetchval(SELECT_DEPLOYMENT)
    if not isinstance(value, uuid.UUID):
        raise RuntimeError("the deployment table is empty; run `exporter migrate`")
    return value
