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
from app.services.templates.saved import delete_template, get_saved, list_saved, save_template

__all__ = [
    "BuiltinTemplate",
    "TemplateApplication",
    "apply_template",
    "builtin_template",
    "builtin_templates",
    "delete_template",
    "export_study",
    "get_saved",
    "list_saved",
    "parse_template",
    "save_template",
    "template_schema",
]
