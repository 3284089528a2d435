"""A JSON response that serializes a pydantic model once.

Returning a model from an endpoint makes FastAPI validate it again against the
``response_model`` before serializing it. For the hot snapshot reads the model was
just built from validated data, so that second pass only costs time; endpoints
return ``ModelResponse(model)`` and keep ``response_model=`` for the OpenAPI schema
(a ``JSONResponse`` subclass, so FastAPI documents that model and not a string).
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel
from starlette.responses import JSONResponse


class ModelResponse(JSONResponse):
    def render(self, content: Any) -> bytes:
        if isinstance(content, BaseModel):
            return content.model_dump_json().encode()
        raise TypeError("ModelResponse takes a pydantic model")
