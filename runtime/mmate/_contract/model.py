"""The base class of every generated message and record model."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


def _is_none(value: object) -> bool:
    return value is None


class Model(BaseModel):
    """Base of generated models.

    Attributes are snake_case Python names; the JSON names on the wire (camelCase) are their
    aliases. Models accept either name when constructed, ignore unknown keys when read (tolerant
    reader), and are serialized by alias. Floats must be finite: ``NaN`` and infinities have no JSON
    form (the wire decoder rejects them too), so they fail validation instead of going out as
    ``null``.

    An optional field whose default is None is left out when it is None, as Go Mmate leaves out an
    unset optional field (``omitempty``): no ``"replyTo": null``, ``"errorCode": null``. Reading
    it back gives None either way. A None is still written where leaving it out would read back
    as something else: a required field (``x: int | None`` without a default) and a field whose
    default is not None.
    """

    model_config = ConfigDict(populate_by_name=True, extra="ignore", allow_inf_nan=False)

    @classmethod
    def __pydantic_on_complete__(cls) -> None:
        """Once the class is complete (its forward references resolved): mark its None-default
        fields to be left out when None, and build its serializer again with them."""
        unmarked = [
            field
            for field in cls.model_fields.values()
            if not field.is_required() and field.default is None and field.exclude_if is None
        ]
        if unmarked:
            for field in unmarked:
                field.exclude_if = _is_none
            cls.model_rebuild(force=True)
