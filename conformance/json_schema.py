"""The vector format as JSON Schema (draft-07), generated from schema.py.

Editors that check TOML against a JSON Schema (Taplo, Even Better TOML)
read the files this writes. The schema covers what a file's shape can
say; the rules (rules.py) that relate values to each other stay the
loader's. `python -m conformance schema --check` fails when the shipped
files differ from what the declarations generate. Draft-07 counts 4096.0
as an integer, so an integral float passes the schema and only the loader
refuses it; Taplo reads an integer beyond 64 bits as 0, so the loader alone
sees those bounds broken (docs/editor.md).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from . import expectations, schema

DRAFT = "http://json-schema.org/draft-07/schema#"
SCHEMA_DIR = Path(__file__).parent / "schemas"
# file name -> what it describes; the format version is part of each $id
PUBLISHED = {
    "vector-file.schema.json": schema.FILE_DOCUMENT,
    "flag-registry.schema.json": schema.REGISTRY_DOCUMENT,
    "expectations.schema.json": expectations.DOCUMENT,
}
ONE_LINE = r"^[^\n]*\S[^\n]*$"


class _Writer:
    """Turns schema types into JSON Schema; named tables become definitions."""

    def __init__(self, parts: dict[str, schema.Type]) -> None:
        self.parts = parts
        self.definitions: dict[str, Any] = {}

    def type(self, kind: schema.Type) -> dict[str, Any]:
        method = getattr(self, "_" + type(kind).__name__.lower())
        return method(kind)  # type: ignore[no-any-return]

    def _int(self, kind: schema.Int) -> dict[str, Any]:
        if kind.values:
            return {"type": "integer", "enum": list(kind.values)}
        return {"type": "integer", "minimum": kind.lo, "maximum": kind.hi}

    def _bool(self, kind: schema.Bool) -> dict[str, Any]:
        return {"type": "boolean"}

    def _str(self, kind: schema.Str) -> dict[str, Any]:
        out: dict[str, Any] = {"type": "string"}
        if kind.pattern:
            out["pattern"] = kind.pattern
        if kind.one_line:
            out["pattern"] = ONE_LINE
        return out

    def _choice(self, kind: schema.Choice) -> dict[str, Any]:
        return {"type": "string", "enum": list(kind.names)}

    def _array(self, kind: schema.Array) -> dict[str, Any]:
        out: dict[str, Any] = {"type": "array", "items": self.type(kind.item)}
        if kind.min_items:
            out["minItems"] = kind.min_items
        if kind.distinct:
            out["uniqueItems"] = True
        return out

    def _cells(self, kind: schema.Cells) -> dict[str, Any]:
        return {
            "type": "array",
            "items": [self.type(item) for item in kind.items],
            "additionalItems": False,
            "minItems": len(kind.items) - kind.optional,
            "maxItems": len(kind.items),
        }

    def _bits(self, kind: schema.Bits) -> dict[str, Any]:
        names = {"type": "array", "items": {"type": "string", "enum": list(kind.names)}, "uniqueItems": True}
        return {"anyOf": [names, {"type": "integer", "minimum": 0, "maximum": kind.hi}]}

    def _either(self, kind: schema.Either) -> dict[str, Any]:
        return {"anyOf": [self._choice(kind.name), self._int(kind.number)]}

    def _table(self, kind: schema.Table) -> dict[str, Any]:
        if kind.name not in self.definitions:
            self.definitions[kind.name] = {}  # claimed first: a table may (one day) contain itself
            self.definitions[kind.name] = self._object(kind.fields, kind.doc)
        return {"$ref": f"#/definitions/{_ref(kind.name)}"}

    def _object(self, fields: tuple[schema.Field, ...], doc: str = "") -> dict[str, Any]:
        properties = {}
        for spec in fields:
            kind = schema.Array(self.parts[spec.key]) if spec.key in self.parts else spec.type
            properties[spec.key] = {**self.type(kind), **({"description": spec.doc} if spec.doc else {})}
        out: dict[str, Any] = {"type": "object", "properties": properties, "additionalProperties": False}
        required = [f.key for f in fields if f.required]
        if required:
            out["required"] = required
        if doc:
            out["description"] = doc
        return out

    def _mapof(self, kind: schema.MapOf) -> dict[str, Any]:
        return {
            "type": "object",
            "propertyNames": {"pattern": kind.key.pattern},
            "additionalProperties": self.type(kind.value),
        }

    def _tagged(self, kind: schema.Tagged) -> dict[str, Any]:
        cases = []
        for name, case in kind.cases.items():
            fields = (schema.Field(kind.tag, schema.Str(), True),) + case.fields + kind.common
            cases.append(
                {
                    "if": {"properties": {kind.tag: {"const": name}}, "required": [kind.tag]},
                    "then": self._object(fields),
                }
            )
        return {
            "type": "object",
            "required": [kind.tag],
            "properties": {kind.tag: {"type": "string", "enum": list(kind.cases)}},
            "allOf": cases,
        }

    def _anything(self, kind: schema.Anything) -> dict[str, Any]:
        return {"description": kind.doc} if kind.doc else {}


def _ref(name: str) -> str:
    return name.replace(" ", "-")


def generate(document: schema.Published) -> dict[str, Any]:
    """One published document as a JSON Schema object."""
    writer = _Writer(document.parts)
    root = writer._object(document.root.fields, document.root.doc)
    return {
        "$schema": DRAFT,
        "$id": f"urn:kvm-mmu-conformance:{document.kind}:format-{document.format}",
        "title": document.title,
        "description": f"Format {document.format}, generated from conformance/schema.py; {document.docs} "
        f"describes every key and the rules that relate keys to each other.",
        **root,
        "definitions": {_ref(name): value for name, value in sorted(writer.definitions.items())},
    }


def render(document: schema.Published) -> str:
    return json.dumps(generate(document), indent=2, sort_keys=False) + "\n"


def write(directory: Path = SCHEMA_DIR) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, document in PUBLISHED.items():
        path = directory / name
        path.write_text(render(document), encoding="utf-8")
        written.append(path)
    return written


def stale(directory: Path = SCHEMA_DIR) -> list[str]:
    """The shipped files that differ from what the declarations generate."""
    out = []
    for name, document in PUBLISHED.items():
        path = directory / name
        if not path.is_file() or path.read_text(encoding="utf-8") != render(document):
            out.append(str(path))
    return out
