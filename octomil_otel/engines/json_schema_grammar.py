"""What of a JSON schema llama.cpp's grammar enforces, checked before a request runs.

llama-cpp-python turns a ``response_format`` schema or a forced tool's parameters into a
grammar that constrains every token. What its converter cannot express it drops without a
word: an unknown keyword (``minimum``, ``not``) or string ``format`` is not enforced, and a
schema it fails on (a recursive or bad ``$ref``, a pattern without anchors) becomes "any
JSON". A client that asked for a schema then gets an answer that breaks it, and a 200. So a
schema is refused, naming the request field it came in, unless all of it is enforced.
"""

from __future__ import annotations

import json
from typing import Any

from octomil_otel.engines.base import RequestError

# what llama-cpp-python's schema-to-grammar converter enforces, and annotations
_SCHEMA_KEYWORDS = frozenset(
    {"type", "properties", "required", "additionalProperties", "items", "prefixItems",
     "minItems", "maxItems", "enum", "const", "oneOf", "anyOf", "allOf", "$ref", "$defs",
     "definitions", "pattern", "format", "minLength", "maxLength",
     "title", "description", "default", "examples", "$schema", "$id", "$comment",
     "deprecated", "readOnly", "writeOnly"}
)  # fmt: skip


def check_schema(schema: Any, param: str) -> None:
    """``RequestError`` unless llama.cpp's grammar enforces all of ``schema``."""
    from llama_cpp.llama_grammar import json_schema_to_gbnf

    _check_keywords(schema, param)
    try:
        json_schema_to_gbnf(json.dumps(schema))
    except Exception as problem:  # any failure: the grammar would be "any JSON"
        raise RequestError(
            f"a JSON schema llama.cpp's grammar cannot enforce "
            f"({type(problem).__name__}: {problem})",
            param,
        ) from None


_FORMATS = frozenset({"date", "time", "date-time", "uuid", *(f"uuid{v}" for v in range(1, 6))})
"""The string formats its grammar enforces; any other would be free text."""


def _check_keywords(schema: Any, param: str) -> None:
    if not isinstance(schema, dict):
        return
    for keyword, value in schema.items():
        if keyword not in _SCHEMA_KEYWORDS:
            raise RequestError(f"{keyword!r} in a JSON schema is not enforced by llama.cpp", param)
        if keyword == "format" and value not in _FORMATS:
            raise RequestError(
                f"format {value!r} in a JSON schema is not enforced by llama.cpp", param
            )
        if keyword in ("properties", "$defs", "definitions") and isinstance(value, dict):
            for child in value.values():
                _check_keywords(child, param)
        elif keyword in ("prefixItems", "oneOf", "anyOf", "allOf") and isinstance(value, list):
            for child in value:
                _check_keywords(child, param)
        elif keyword in ("items", "additionalProperties"):
            _check_keywords(value, param)
