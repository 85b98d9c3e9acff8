"""Pages of the manual made from the code at build time (``mkdocs-gen-files``), so they cannot drift.

- ``reference/cli.md``: every command and option, read from the ``crowdsafe`` command's own click
  tree (typer builds one), with the help texts the terminal shows.
- ``reference/site-schema.md``: the output of ``crowdsafe site schema``, run here, as a table of
  the site file's fields and as the full JSON Schema.
- ``reference/python/<package>.md``: mkdocstrings pages of every module, from its docstrings.
- ``security.md`` and ``model-card.md``: SECURITY.md and MODEL_CARD.md from the repository root.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import mkdocs_gen_files
import typer
from typer.testing import CliRunner

from crowdsafe.cli.main import app

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src" / "crowdsafe"


def _cell(text: object) -> str:
    return " ".join(str(text).split()).replace("|", "\\|")


# Typer builds its command tree with the click it vendors, so the tree is read by duck typing
# (``commands``, ``get_help_record``) rather than by isinstance checks against ``click``.
def _param_row(param: Any, ctx: Any) -> str:
    """One row: the names and the help text (defaults and choices included) that ``--help`` prints."""
    record = param.get_help_record(ctx)
    names, help_text = record if record else (param.human_readable_name, "")
    required = " (required)" if param.required else ""
    return f"| `{_cell(names)}`{required} | {_cell(help_text)} |"


def _commands(command: Any, path: list[str]) -> list[tuple[list[str], Any]]:
    found = [(path, command)]
    if hasattr(command, "commands"):
        for name in sorted(command.commands):
            found += _commands(command.commands[name], [*path, name])
    return found


def cli_reference() -> str:
    root = typer.main.get_command(app)
    out = ["# Command reference", "",
           "Generated from the `crowdsafe` command itself when this manual is built: every command, "
           "argument and option, with the help text `--help` prints. The [commands overview](../commands.md) "
           "says what each one is for.", ""]
    for path, command in _commands(root, ["crowdsafe"]):
        if command.hidden:
            continue
        ctx = command.context_class(command, info_name=" ".join(path))
        level = "#" * min(len(path) + 1, 4)
        out += [f"{level} `{' '.join(path)}`", "", (command.help or "").strip(), "",
                "```text", command.get_usage(ctx), "```", ""]
        params = [p for p in command.get_params(ctx) if p.name != "help"]
        if params and not hasattr(command, "commands"):
            out += ["| argument / option | what |", "|---|---|", *(_param_row(p, ctx) for p in params), ""]
        if hasattr(command, "commands"):
            subs = ", ".join(f"`{name}`" for name in sorted(command.commands))
            out += [f"Sub-commands: {subs}.", ""]
    return "\n".join(out) + "\n"


def _type(spec: dict[str, Any]) -> str:
    if "$ref" in spec:
        name = spec["$ref"].rsplit("/", 1)[-1]
        return f"[{name}](#{name.lower()})"
    if "anyOf" in spec:
        return " or ".join(_type(s) for s in spec["anyOf"])
    if "enum" in spec:
        return " \\| ".join(f"`{v}`" for v in spec["enum"])
    if "const" in spec:
        return f"`{spec['const']}`"
    kind = spec.get("type", "any")
    if kind == "array" and "prefixItems" in spec:
        return "[" + ", ".join(_type(s) for s in spec["prefixItems"]) + "]"
    if kind == "array":
        return f"list of {_type(spec.get('items', {}))}"
    if kind == "object" and "additionalProperties" in spec and isinstance(spec["additionalProperties"], dict):
        return f"map of {_type(spec['additionalProperties'])}"
    return str(kind)


def _fields(schema: dict[str, Any]) -> list[str]:
    required = set(schema.get("required", []))
    rows = ["| field | type | default | what |", "|---|---|---|---|"]
    for name, spec in schema.get("properties", {}).items():
        default = f"`{json.dumps(spec['default'])}`" if "default" in spec else ""
        mark = " (required)" if name in required else ""
        rows.append(f"| `{name}`{mark} | {_cell(_type(spec))} | {_cell(default)} | "
                    f"{_cell(spec.get('description', ''))} |")
    return rows


def site_schema() -> str:
    result = CliRunner().invoke(app, ["site", "schema"])
    if result.exit_code != 0:
        raise RuntimeError(f"crowdsafe site schema failed: {result.output}")
    schema = json.loads(result.output)
    out = ["# Site file schema", "",
           "Generated when this manual is built from the output of `crowdsafe site schema` (the JSON "
           "Schema of the pydantic model `crowdsafe.config.site.Site`). How to write a site: "
           "[Sites](../sites.md); check one with `crowdsafe site check SITE.yaml`.", "",
           "## Site (top level)", "", *_fields(schema), ""]
    for name, definition in sorted(schema.get("$defs", {}).items()):
        if "properties" not in definition:
            continue
        out += [f"## {name}", "", _cell(definition.get("description", "")), "", *_fields(definition), ""]
    out += ["## The full schema", "", "```json", json.dumps(schema, indent=2), "```", ""]
    return "\n".join(out)


def python_reference() -> dict[str, str]:
    pages = {}
    packages = sorted(p for p in SRC.iterdir() if (p / "__init__.py").is_file())
    index = ["# Python API", "",
             "Generated from the docstrings when this manual is built (mkdocstrings). Each package is "
             "one page; [Architecture](../../architecture.md) says what each owns and which way "
             "imports go.", "", "| package | modules |", "|---|---|"]
    for package in packages:
        submodules = sorted(".".join(m.relative_to(SRC.parent).with_suffix("").parts)
                            for m in package.rglob("*.py") if m.name != "__init__.py")
        modules = [f"crowdsafe.{package.name}", *submodules]
        body = [f"# crowdsafe.{package.name}", ""]
        for module in modules:
            body += [f"::: {module}", "    options:", "      show_root_heading: true",
                     "      show_submodules: false", ""]
        pages[f"reference/python/{package.name}.md"] = "\n".join(body)
        index.append(f"| [`{package.name}`]({package.name}.md) | {len(modules)} |")
    pages["reference/python/index.md"] = "\n".join(index) + "\n"
    return pages


def main() -> None:
    pages = {"reference/cli.md": cli_reference(), "reference/site-schema.md": site_schema(),
             "security.md": (ROOT / "SECURITY.md").read_text(encoding="utf-8"),
             "model-card.md": (ROOT / "MODEL_CARD.md").read_text(encoding="utf-8"),
             **python_reference()}
    for name, text in pages.items():
        with mkdocs_gen_files.open(name, "w") as fh:
            fh.write(text)


main()
