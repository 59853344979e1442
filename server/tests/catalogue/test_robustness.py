"""Any JSON a client can send gets either an effective configuration or a TaskConfigError."""

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator

from app.catalogue import MODULE_IDS, TaskConfigError, get_module, validate_task_config

PARAMETER_NAMES = sorted(
    {name for module_id in MODULE_IDS for name in get_module(module_id).config_schema["properties"]}
)

json_values: st.SearchStrategy[Any] = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**12), max_value=10**12)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=10),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=5), inner),
    max_leaves=10,
)
configs = st.dictionaries(
    st.sampled_from(PARAMETER_NAMES) | st.text(max_size=12), json_values, max_size=6
)


@settings(max_examples=400, deadline=None)
@given(module_id=st.sampled_from([*MODULE_IDS, "cpt"]), config=configs)
def test_any_json_config_is_accepted_or_rejected_cleanly(
    module_id: str, config: dict[str, Any]
) -> None:
    try:
        effective = validate_task_config(module_id, config)
    except TaskConfigError as error:
        assert error.errors
        assert all(isinstance(e["field"], str) and e["message"] for e in error.errors)
    else:
        Draft202012Validator(get_module(module_id).config_schema).validate(effective)


@settings(max_examples=200, deadline=None)
@given(module_id=st.sampled_from(MODULE_IDS), data=st.data())
def test_in_range_values_of_single_parameters(module_id: str, data: st.DataObject) -> None:
    properties = get_module(module_id).config_schema["properties"]
    name = data.draw(st.sampled_from(sorted(properties)))
    schema = properties[name]
    if schema["type"] != "integer" or "const" in schema:
        return
    value = data.draw(st.integers(schema["minimum"], schema["maximum"]))
    try:
        assert validate_task_config(module_id, {name: value})[name] == value
    except TaskConfigError as error:
        # An in-range value can only break a cross-field rule, which names some field.
        assert all(e["field"] in properties for e in error.errors)
