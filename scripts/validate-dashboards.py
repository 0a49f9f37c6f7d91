#!/usr/bin/env python3
"""Validate Grafana dashboard JSON against the Grafana foundation SDK's dashboard schema.

No Grafana server runs in CI, so this is the closest check of what Grafana will load. The SDK
(PyPI `grafana-foundation-sdk`, generated from Grafana's own CUE schema) has a typed model per
dashboard object, panel type (options and field config) and datasource query. Each dashboard
is decoded through those models and checked three ways:

1. every panel type and every query's datasource type is one the schema knows;
2. every value has the type its model declares (ints, strings, enums, nested objects, lists);
3. nothing is lost in a round trip through the models: a field the schema does not have
   (a typo, or a field of another panel type) would be dropped, so it is reported.

Usage: validate-dashboards.py FILE...   Exit status 1 when any file has a problem.
"""

import enum
import inspect
import json
import sys
import typing

from grafana_foundation_sdk.cog import encoder, plugins, runtime
from grafana_foundation_sdk.models import dashboard as dm

plugins.register_default_plugins()

# Fields Grafana reads that the schema does not model, and why they are still right.
# Prometheus annotation queries keep their query at the top level of the annotation (this is
# what Grafana itself saves for the Prometheus datasource); the schema only models `target`.
ALLOWED_EXTRA = {
    ("annotations", "expr"),
    ("annotations", "step"),
    ("annotations", "titleFormat"),
    ("annotations", "textFormat"),
    ("annotations", "tagKeys"),
    ("annotations", "useValueForTime"),
    # The text of a query variable as its editor shows it; Grafana saves it with the query.
    ("templating", "definition"),
}


def shallow_match(value, hint):
    """Whether `value` is of the kind `hint` names, without looking inside it."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is typing.Any or hint is object:
        return True
    if origin is typing.Union:
        return any(shallow_match(value, a) for a in args)
    if origin is list:
        return isinstance(value, list)
    if origin is dict:
        return isinstance(value, dict)
    if origin is typing.Literal:
        return value in args
    if hint is type(None):
        return value is None
    if inspect.isclass(hint) and issubclass(hint, enum.Enum):
        return isinstance(value, hint) or value in {m.value for m in hint}
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    return inspect.isclass(hint) and isinstance(value, hint)


def type_errors(value, hint, path, errors):
    """Append to `errors` where `value` does not match the type annotation `hint`."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is typing.Any or hint is object:
        # Panel options and custom field config are typed `object` but decoded into the
        # panel type's own model: check that model.
        if hasattr(value, "to_json"):
            model_errors(value, path, errors)
        return
    if origin is typing.Union:
        if value is None and type(None) in args:
            return
        # Check against the alternative of the value's kind, so errors inside it are named.
        for alt in (a for a in args if a is not type(None)):
            if shallow_match(value, alt):
                type_errors(value, alt, path, errors)
                return
        errors.append(f"{path}: {value!r} is none of {hint}")
    elif origin is list:
        if not isinstance(value, list):
            errors.append(f"{path}: expected a list, got {value!r}")
            return
        for i, item in enumerate(value):
            type_errors(item, args[0], f"{path}[{i}]", errors)
    elif origin is dict:
        if not isinstance(value, dict):
            errors.append(f"{path}: expected an object, got {value!r}")
            return
        for k, item in value.items():
            type_errors(item, args[1], f"{path}.{k}", errors)
    elif origin is typing.Literal:
        if value not in args:
            errors.append(f"{path}: {value!r} is not one of {args}")
    elif inspect.isclass(hint) and issubclass(hint, enum.Enum):
        if not isinstance(value, hint) and value not in {m.value for m in hint}:
            errors.append(f"{path}: {value!r} is not one of {[m.value for m in hint]}")
    elif hint is bool:
        if not isinstance(value, bool):
            errors.append(f"{path}: expected a boolean, got {value!r}")
    elif hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            errors.append(f"{path}: expected an integer, got {value!r}")
    elif hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            errors.append(f"{path}: expected a number, got {value!r}")
    elif hint is str:
        if not isinstance(value, str):
            errors.append(f"{path}: expected a string, got {value!r}")
    elif inspect.isclass(hint):
        if isinstance(value, dict) and hasattr(hint, "from_json"):
            # Some lists (transformations) stay plain JSON on load: decode them here.
            try:
                model = hint.from_json(value)
            except (KeyError, TypeError, ValueError, AttributeError) as e:
                errors.append(f"{path}: does not load as {hint.__name__}: {e}")
                return
            back = json.loads(json.dumps(model, cls=encoder.JSONEncoder))
            lost_fields(value, back, path, errors, None)
            value = model
        if isinstance(value, runtime.UnknownDataquery):
            errors.append(f"{path}: a query of a datasource type the schema does not know")
        elif not isinstance(value, hint):
            errors.append(f"{path}: expected {hint.__name__}, got {value!r}")
        elif hasattr(value, "to_json"):
            model_errors(value, path, errors)


def model_errors(obj, path, errors):
    """Check every annotated attribute of a model instance against its annotation."""
    hints = {}
    for klass in reversed(type(obj).__mro__):
        hints.update(typing.get_type_hints(klass) if klass is not object else {})
    for name, hint in hints.items():
        if hasattr(obj, name):
            type_errors(getattr(obj, name), hint, f"{path}.{name}", errors)


def lost_fields(original, round_tripped, path, errors, top):
    """Report every field of `original` that the round trip dropped or changed."""
    if isinstance(original, dict):
        if not isinstance(round_tripped, dict):
            errors.append(f"{path}: became {round_tripped!r}")
            return
        for k, v in original.items():
            if k not in round_tripped:
                if (top, k) not in ALLOWED_EXTRA:
                    errors.append(f"{path}.{k}: not in the schema (dropped on load)")
                continue
            lost_fields(v, round_tripped[k], f"{path}.{k}", errors, top)
    elif isinstance(original, list):
        if not isinstance(round_tripped, list) or len(round_tripped) != len(original):
            errors.append(f"{path}: the list changed on load")
            return
        for i, (a, b) in enumerate(zip(original, round_tripped)):
            lost_fields(a, b, f"{path}[{i}]", errors, top)
    elif original != round_tripped:
        errors.append(f"{path}: {original!r} read back as {round_tripped!r}")


def validate(raw):
    errors = []
    for i, p in enumerate(raw.get("panels", [])):
        t = p.get("type", "")
        if t != "row" and runtime.panelcfg_config(t) is None:
            errors.append(f"panels[{i}]: panel type {t!r} is not in the schema")
    try:
        d = dm.Dashboard.from_json(raw)
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        return [f"does not load: {type(e).__name__}: {e}"]
    model_errors(d, "dashboard", errors)
    back = json.loads(json.dumps(d, cls=encoder.JSONEncoder))
    for k, v in raw.items():
        if k not in back:
            errors.append(f"{k}: not in the schema (dropped on load)")
        else:
            lost_fields(v, back[k], k, errors, k)
    return errors


def main(paths):
    bad = 0
    for path in paths:
        try:
            with open(path, encoding="utf-8") as f:
                raw = json.load(f)
        except (OSError, ValueError) as e:
            print(f"{path}: cannot read: {e}", file=sys.stderr)
            bad += 1
            continue
        errors = validate(raw)
        for e in errors:
            print(f"{path}: {e}", file=sys.stderr)
        bad += bool(errors)
        if not errors:
            print(f"{path}: valid ({len(raw.get('panels', []))} panels)")
    return 1 if bad or not paths else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
