"""What each agent's model answers, as the input schema of its `answer` tool.

The schemas are cut from the contracts (`switchboard/contracts.py`), not written twice: the
fields the model fills, with the contract's types, enums and bounds; what Switchboard adds
itself (ids, the idempotency key, the schema version) left out. They are self-contained (no
`$ref`), because Gemini's function declarations and the Messages API's tools both take one
plain JSON schema object per tool.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from switchboard.agents.llm.base import ANSWER_TOOL, ToolSpec
from switchboard.contracts import (
    ActionPlan,
    Alert,
    Analysis,
    CreateHubSpotTask,
    DraftCustomerMessage,
    FlagFinanceReview,
    NoAction,
    OpenStripeDisputeReview,
)

# Set by Switchboard, never by the model.
OURS = {"schema_version", "idempotency_key", "run_id", "insight_id", "alert", "analysis", "provider", "model"}


def _inline(node: Any, defs: dict[str, Any]) -> Any:
    """The schema with every `$ref` replaced by its definition and pydantic's titles dropped."""
    if isinstance(node, list):
        return [_inline(item, defs) for item in node]
    if not isinstance(node, dict):
        return node
    if "$ref" in node:
        return _inline(defs[node["$ref"].rsplit("/", 1)[-1]], defs)
    inlined = {key: _inline(value, defs) for key, value in node.items() if key not in ("title", "$defs")}
    if isinstance(inlined.get("properties"), dict):  # a nested contract: its version is ours to set
        inlined["properties"].pop("schema_version", None)
    return inlined


def _not_null(schema: dict[str, Any]) -> dict[str, Any]:
    """A required field's schema without pydantic's `anyOf [..., null]` for an optional type."""
    options = [option for option in schema.get("anyOf", []) if option.get("type") != "null"]
    if len(options) == 1:
        return {**{k: v for k, v in schema.items() if k not in ("anyOf", "default")}, **options[0]}
    return schema


def cut(model: type[BaseModel], *, required: tuple[str, ...], optional: tuple[str, ...] = ()) -> dict[str, Any]:
    """The object schema of ``model``'s fields ``required`` (non-null) and ``optional``."""
    full = model.model_json_schema()
    defs = full.get("$defs", {})
    properties = {}
    for name in (*required, *optional):
        schema = _inline(full["properties"][name], defs)
        properties[name] = _not_null(schema) if name in required else schema
    return {"type": "object", "properties": properties, "required": list(required), "additionalProperties": False}


def _action(model: type[BaseModel]) -> dict[str, Any]:
    fields = [name for name in model.model_fields if name not in OURS and name != "type"]
    # the model may leave out the risk (the type's floor applies) and the reason (the rationale)
    required = tuple(f for f in fields if model.model_fields[f].is_required() and f not in ("risk", "reason"))
    schema = cut(model, required=("type", *required), optional=tuple(f for f in fields if f not in required))
    schema["properties"]["type"] = {"const": model.model_fields["type"].default}
    return schema


ACTION_MODELS = (CreateHubSpotTask, DraftCustomerMessage, FlagFinanceReview, OpenStripeDisputeReview, NoAction)


def answer_tool(description: str, schema: dict[str, Any]) -> ToolSpec:
    return ToolSpec(ANSWER_TOOL, description, schema)


WATCHER = answer_tool(
    "Give your answer: a one-line summary of the alert for an operator and its rank among the open alerts.",
    cut(Alert, required=("summary", "rank")),
)

ANALYST = answer_tool(
    "Give your analysis: the root cause, a 2-5 sentence narrative, the ids of the records that support it, "
    "and your confidence.",
    cut(Analysis, required=("root_cause", "narrative", "evidence_ids", "confidence")),
)

ADVISOR = answer_tool(
    "Give your plan: the actions to take (1 to 10) and why.",
    {
        "type": "object",
        "properties": {
            "actions": {
                "type": "array",
                "minItems": ActionPlan.model_json_schema()["properties"]["actions"].get("minItems", 1),
                "maxItems": ActionPlan.model_json_schema()["properties"]["actions"].get("maxItems", 10),
                "items": {"anyOf": [_action(model) for model in ACTION_MODELS]},
            },
            "rationale": cut(ActionPlan, required=("rationale",))["properties"]["rationale"],
        },
        "required": ["actions", "rationale"],
        "additionalProperties": False,
    },
)
