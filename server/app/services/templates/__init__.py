"""Study templates (docs/templates.md): export a study's configuration as one JSON document,
create a study from one, and the built-in templates."""

from app.services.templates.builtins import BuiltinTemplate, builtin_template, builtin_templates
from app.services.templates.documents import (
    TemplateApplication,
    apply_template,
    export_study,
    parse_template,
    template_schema,
)

__all__ = [
    "BuiltinTemplate",
    "TemplateApplication",
    "apply_template",
    "builtin_template",
    "builtin_templates",
    "export_study",
    "parse_template",
    "template_schema",
]
