"""What FastAPI cannot infer for /openapi.json: two request bodies per route, and the API key.

/verify and /embed read their body themselves (multipart or JSON), so their request bodies are
declared with ``openapi_extra`` and the models' schemas are added to the components here.
"""

from collections.abc import Callable, Sequence
from typing import Any

from fastapi import FastAPI
from pydantic import BaseModel

from service.auth import API_KEY_HEADER, is_public

REF = "#/components/schemas/{model}"
SECURITY_SCHEMES = {
    "APIKeyHeader": {"type": "apiKey", "in": "header", "name": API_KEY_HEADER},
    "BearerAuth": {"type": "http", "scheme": "bearer"},
}
UNAUTHORIZED = {
    "description": "Missing or wrong API key (only when EDGEFACE_API_KEY is set)",
    "content": {"application/json": {"schema": {"$ref": REF.format(model="ErrorResponse")}}},
}


def request_body(form_model: type[BaseModel], json_model: type[BaseModel]) -> dict[str, Any]:
    """``openapi_extra`` of a route taking either a multipart form or the same fields in JSON."""
    return {
        "requestBody": {
            "required": True,
            "content": {
                "multipart/form-data": {"schema": {"$ref": REF.format(model=form_model.__name__)}},
                "application/json": {"schema": {"$ref": REF.format(model=json_model.__name__)}},
            },
        }
    }


def add_model_schemas(schema: dict[str, Any], models: Sequence[type[BaseModel]]) -> None:
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    for model in models:
        model_schema = model.model_json_schema(ref_template=REF)
        components.update(model_schema.pop("$defs", {}))
        components[model.__name__] = model_schema


def require_api_key(schema: dict[str, Any]) -> None:
    """Declare the key (so /docs shows Authorize) on every operation that needs it."""
    schema.setdefault("components", {})["securitySchemes"] = SECURITY_SCHEMES
    either = [{name: []} for name in SECURITY_SCHEMES]
    for path, operations in schema.get("paths", {}).items():
        if is_public(path):
            continue
        for operation in operations.values():
            operation["security"] = either
            operation.setdefault("responses", {})["401"] = UNAUTHORIZED


def install_openapi(
    app: FastAPI, request_models: Sequence[type[BaseModel]], api_key: bool
) -> Callable[[], dict[str, Any]]:
    """Wrap ``app.openapi`` so the generated document has the additions, built once."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = generate()
            add_model_schemas(schema, request_models)
            if api_key:
                require_api_key(schema)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    return openapi
