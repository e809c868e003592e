"""The base class of every generated message and record model."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class Model(BaseModel):
    """Base of generated models.

    Attributes are snake_case Python names; the JSON names on the wire (camelCase) are their
    aliases. Models accept either name when constructed, ignore unknown keys when read (tolerant
    reader), and are serialized by alias. Floats must be finite: ``NaN`` and infinities have no JSON
    form (the wire decoder rejects them too), so they fail validation instead of going out as
    ``null``.
    """

    model_config = ConfigDict(populate_by_name=True, extra="ignore", allow_inf_nan=False)
