"""Typed configs: dataclasses validated by OmegaConf, filled from YAML files plus dotted overrides.

``merge_into(schema, sources)`` merges YAML mappings and ``key=value`` lists into a config dataclass;
an unknown key or a wrongly typed value raises ``ConfigError`` naming the key and the valid choices.
Every layer reads its configs with it (a training run's ``RunConfig`` lives in ``drivewm.train.config``).

Presets ship inside the package (``drivewm/configs``): a config path that is not a file names a
preset (``world/gpt_tiny.yaml``), so every command works from any directory; a user's file wins.
``parse_run_args`` is the one parser of the command-line grammar ``RUN... data=DIR key=value``.
"""

from __future__ import annotations

import ast
import dataclasses
import inspect
import logging
import textwrap
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Sequence

import yaml
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import ConfigKeyError, OmegaConfBaseException, ValidationError

from drivewm.errors import ConfigError


log = logging.getLogger(__name__)


def _valid_keys(node: Any) -> list[str]:
    return sorted(node.keys()) if isinstance(node, DictConfig) else []


def _explain(err: OmegaConfBaseException, schema: DictConfig, source: str) -> ConfigError:
    key = getattr(err, "full_key", None) or "?"
    parent_key = key.rsplit(".", 1)[0] if "." in key else ""
    parent = OmegaConf.select(schema, parent_key) if parent_key else schema
    if isinstance(err, ConfigKeyError):
        return ConfigError(
            f"{source}: unknown key {key!r}; valid keys here: {', '.join(_valid_keys(parent))}"
        )
    if isinstance(err, ValidationError):
        msg = str(err).splitlines()[0]
        return ConfigError(f"{source}: bad value for {key!r}: {msg}")
    return ConfigError(f"{source}: {err}")


def merge_into(schema_obj: Any, sources: Sequence[tuple[str, Any]]) -> Any:
    """Merge (name, dict-or-dotlist) sources into a dataclass instance's schema; return the dataclass."""
    schema = OmegaConf.structured(schema_obj)
    merged = schema
    for name, src in sources:
        try:
            node = OmegaConf.from_dotlist(list(src)) if isinstance(src, (list, tuple)) else OmegaConf.create(src)
            merged = OmegaConf.merge(merged, node)
        except OmegaConfBaseException as e:
            raise _explain(e, schema, name) from None
    try:
        return OmegaConf.to_object(merged)
    except OmegaConfBaseException as e:
        raise _explain(e, schema, "config") from None


def preset_path(name: str | Path) -> Path:
    """The packaged preset `name` (relative to drivewm/configs: "world/gpt_tiny.yaml", or a folder: "world")."""
    root = Path(str(resources.files("drivewm") / "configs"))
    p = root / name
    if not p.exists():
        known = sorted(str(q.relative_to(root)) for q in root.rglob("*.yaml"))
        raise ConfigError(f"no preset {str(name)!r}; packaged presets: {', '.join(known)}")
    return p


def resolve_config_path(path: str | Path) -> Path:
    """A user's config file when it exists, else the packaged preset of that name."""
    p = Path(path)
    if p.is_file():
        return p
    if p.is_absolute() or p.suffix not in (".yaml", ".yml"):
        raise ConfigError(f"config file not found: {p}")
    try:
        packaged = preset_path(p)
    except ConfigError as e:
        raise ConfigError(f"config file not found: {p} (and {e})") from None
    log.info("config %s: the packaged preset %s", p, packaged)
    return packaged


class _DuplicateKey(yaml.YAMLError):
    def __init__(self, key: object, first: int, again: int) -> None:
        super().__init__(f"key {key!r} given twice in one mapping (lines {first} and {again})")


class _UniqueKeyLoader(yaml.SafeLoader):
    """yaml.safe_load that refuses a key given twice in one mapping (plain YAML keeps the last one)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen: dict[object, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":  # `<<: *base` overrides are meant
                continue
            key = self.construct_object(key_node, deep=deep)
            try:
                if key in seen:
                    raise _DuplicateKey(key, seen[key], key_node.start_mark.line + 1)
                seen[key] = key_node.start_mark.line + 1
            except TypeError:  # an unhashable key: SafeLoader reports it
                continue
        return super().construct_mapping(node, deep=deep)


def read_yaml(path: str | Path) -> dict:
    p = resolve_config_path(path)
    try:
        data = yaml.load(p.read_text(), Loader=_UniqueKeyLoader) or {}
    except _DuplicateKey as e:
        raise ConfigError(f"{p}: {e}") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"{p}: not valid YAML: {e}") from None
    except UnicodeDecodeError as e:
        raise ConfigError(f"{p}: not a text file (byte {e.start} is not UTF-8)") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{p}: top level must be a mapping, got {type(data).__name__}")
    return data


@dataclass(frozen=True)
class RunArgs:
    """A command line `RUN... data=DIR key=value` taken apart."""

    paths: list[str]
    """Positional arguments (run directories, config files), in the order given."""
    data: str | None
    """The episode store of `data=DIR` (None when not given)."""
    overrides: list[str]
    """The `key=value` overrides, every key checked against the command's schema."""


def parse_run_args(args: Sequence[str], schema: Any = None, *, source: str = "command line") -> RunArgs:
    """Split `RUN... data=DIR key=value` and check every key against `schema` (a config dataclass).

    `data=DIR` names the episode store everywhere. Each other `key=value` must be a field of `schema`
    with a value of its type, or a ConfigError names it (`unknown key 'model.foo'` with the valid keys);
    with `schema=None` the command takes no overrides.
    """
    paths, data, overrides = [], None, []
    for a in args:
        key, eq, value = a.partition("=")
        if not eq:
            paths.append(a)
        elif not key:
            raise ConfigError(f"{source}: {a!r} is not of the form key=value")
        elif key == "data":
            data = value
        else:
            overrides.append(a)
    if overrides:
        if schema is None:
            key = overrides[0].split("=", 1)[0]
            raise ConfigError(f"{source}: unknown key {key!r}; this command takes RUN... data=DIR only")
        merge_into(schema, [(source, overrides)])
    return RunArgs(paths=paths, data=data, overrides=overrides)


@dataclass(frozen=True)
class FieldDoc:
    """One field of a config dataclass, as `drivewm config show` prints it."""

    name: str
    """Dotted name (`sampling.temperature` for a nested config)."""
    type: str
    default: Any
    """The default value; for a nested config, None (its fields follow under `name.`)."""
    doc: str
    """The attribute docstring (the string literal right below the field), '' when there is none."""
    nested: bool = False
    """True for a nested config dataclass."""


def attribute_docs(cls: type) -> dict[str, str]:
    """Attribute docstrings of a dataclass and its bases, parsed from the source with `ast`."""
    docs: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if not dataclasses.is_dataclass(klass) or klass is object:
            continue
        try:
            tree = ast.parse(textwrap.dedent(inspect.getsource(klass)))
        except (OSError, TypeError):
            continue
        body = tree.body[0].body if tree.body and isinstance(tree.body[0], ast.ClassDef) else []
        for stmt, nxt in zip(body, body[1:] + [None]):
            if (isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name) and isinstance(nxt, ast.Expr)
                    and isinstance(nxt.value, ast.Constant) and isinstance(nxt.value.value, str)):
                docs[stmt.target.id] = inspect.cleandoc(nxt.value.value)
    return docs


def config_fields(cls: type, prefix: str = "") -> list[FieldDoc]:
    """Every field of a config dataclass with its type, default and docstring; nested configs are expanded."""
    docs = attribute_docs(cls)
    out = []
    for f in dataclasses.fields(cls):
        if f.default is not dataclasses.MISSING:
            default = f.default
        elif f.default_factory is not dataclasses.MISSING:
            default = f.default_factory()
        else:
            default = dataclasses.MISSING
        name = prefix + f.name
        if dataclasses.is_dataclass(default):
            out.append(FieldDoc(name=name, type=type(default).__name__, default=None, doc=docs.get(f.name, ""), nested=True))
            out.extend(config_fields(type(default), prefix=name + "."))
            continue
        type_name = f.type if isinstance(f.type, str) else getattr(f.type, "__name__", str(f.type))
        out.append(FieldDoc(name=name, type=type_name, default="(required)" if default is dataclasses.MISSING else default,
                            doc=docs.get(f.name, "")))
    return out


def to_yaml(cfg: Any) -> str:
    return OmegaConf.to_yaml(OmegaConf.structured(cfg))
