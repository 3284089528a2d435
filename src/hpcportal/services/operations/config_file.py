"""Read ``cluster_config.yaml`` and explain what is wrong with it, line by line.

pydantic reports *where* an error is as a path of keys (``servers.1.port``); people
edit lines. So the file is read twice from one text: ``yaml.safe_load`` for the data
pydantic validates, and ``yaml.compose`` for the node tree whose marks give each
key's and value's line and column. An error's path is walked down that tree (a
discriminated union adds its tag, ``postgresql``, to the path; a step with no node
is skipped) to the deepest node it names.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml  # type: ignore[import-untyped,unused-ignore]
from pydantic import ValidationError

from hpcportal.services.operations.cluster_config import ClusterConfig, SemanticError

#: A file larger than this is not a cluster description (and would be slow to compose).
MAX_BYTES = 1_000_000


@dataclass(frozen=True)
class ConfigIssue:
    """One problem: where (1-based line and column, and the key path) and what."""

    line: int
    column: int
    path: str
    message: str

    def __str__(self) -> str:
        where = f"{self.path}: " if self.path else ""
        return f"line {self.line}, column {self.column}: {where}{self.message}"


class ConfigInvalid(Exception):
    """The file cannot be used; ``issues`` lists every problem found, in file order."""

    def __init__(self, source: str, issues: list[ConfigIssue]) -> None:
        self.source = source
        self.issues = sorted(issues, key=lambda issue: (issue.line, issue.column))
        super().__init__("\n".join(f"{source}: {issue}" for issue in self.issues))


def load_config_file(path: Path) -> ClusterConfig:
    """Read and validate ``path``; raise ``ConfigInvalid`` (also for an unreadable file)."""
    try:
        with path.open("rb") as handle:
            raw = handle.read(MAX_BYTES + 1)
    except OSError as exc:
        issue = ConfigIssue(0, 0, "", f"cannot read: {exc.strerror}")
        raise ConfigInvalid(str(path), [issue]) from None
    if len(raw) > MAX_BYTES:
        raise ConfigInvalid(str(path), [ConfigIssue(0, 0, "", f"larger than {MAX_BYTES} bytes")])
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        issue = ConfigIssue(0, 0, "", f"not UTF-8 text (byte {exc.start})")
        raise ConfigInvalid(str(path), [issue]) from None
    return load_config_text(text, str(path))


def load_config_text(text: str, source: str = "cluster_config.yaml") -> ClusterConfig:
    """Validate YAML text; raise ``ConfigInvalid`` with line-numbered issues."""
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, column = (mark.line + 1, mark.column + 1) if mark else (0, 0)
        problem = exc.problem or exc.context or "not valid YAML"
        raise ConfigInvalid(source, [ConfigIssue(line, column, "", f"YAML: {problem}")]) from None
    except yaml.YAMLError as exc:
        raise ConfigInvalid(source, [ConfigIssue(0, 0, "", f"YAML: {exc}")]) from None
    if root is None:
        raise ConfigInvalid(source, [ConfigIssue(1, 1, "", "the file is empty")])
    if not isinstance(root, yaml.MappingNode):
        issue = ConfigIssue(*_mark(root), "", "the top level must be a mapping of sections")
        raise ConfigInvalid(source, [issue])
    duplicates = list(_duplicate_keys(root, ""))
    if duplicates:
        raise ConfigInvalid(source, duplicates)
    try:
        return ClusterConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigInvalid(source, [_issue(root, error) for error in exc.errors()]) from None


def _mark(node: yaml.Node) -> tuple[int, int]:
    return node.start_mark.line + 1, node.start_mark.column + 1


def _duplicate_keys(node: yaml.Node, path: str) -> Any:
    """YAML keeps the last of two equal keys silently; a person meant one of them."""
    if isinstance(node, yaml.MappingNode):
        seen: set[str] = set()
        for key, value in node.value:
            name = str(key.value)
            here = f"{path}.{name}" if path else name
            if name in seen:
                yield ConfigIssue(*_mark(key), here, "this key appears twice in one section")
            seen.add(name)
            yield from _duplicate_keys(value, here)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            yield from _duplicate_keys(item, f"{path}[{index}]")


def _issue(root: yaml.Node, error: Any) -> ConfigIssue:
    loc: tuple[str | int, ...] = tuple(error["loc"])
    message = str(error["msg"])
    cause = (error.get("ctx") or {}).get("error")
    if isinstance(cause, SemanticError):
        loc = loc + cause.loc
        message = cause.message
    elif message.startswith("Value error, "):
        message = message.removeprefix("Value error, ")
    else:
        message = _plain(error, message)
    if error["type"] == "union_tag_invalid":  # point at the tag's value, not its section
        loc = (*loc, str(error["ctx"]["discriminator"]).strip("'"))
    node, path = _locate(root, loc, key_wanted=error["type"] == "extra_forbidden")
    return ConfigIssue(*_mark(node), path, message)


def _plain(error: Any, message: str) -> str:
    """pydantic's wording, said the way a person editing the file needs it."""
    kind = error["type"]
    if kind == "missing":
        return "required, but missing"
    if kind == "extra_forbidden":
        return "unknown key (misspelt? see docs/cluster_config.example.yaml)"
    if kind == "greater_than_equal":
        return f"must be at least {error['ctx']['ge']}"
    if kind == "less_than_equal":
        return f"must be at most {error['ctx']['le']}"
    if kind == "string_pattern_mismatch":
        return f"{error['input']!r} has characters not allowed here"
    if kind in {"ip_any_address", "ip_v4_address", "ip_v6_address"}:
        return f"{error['input']!r} is not an IP address"
    if kind in {"ip_any_interface", "ip_v4_interface", "ip_v6_interface"}:
        return f"{error['input']!r} is not an address with its network (like 10.0.0.2/24)"
    if kind == "union_tag_invalid":
        expected = error["ctx"]["expected_tags"]
        return f"{error['ctx']['tag']!r} is not one of {expected}"
    if kind == "union_tag_not_found":
        return f"says which kind it is with {error['ctx']['discriminator']}, which is missing"
    return message[:1].lower() + message[1:]


def _locate(
    root: yaml.Node, loc: tuple[str | int, ...], *, key_wanted: bool
) -> tuple[yaml.Node, str]:
    """The node ``loc`` names (its value, or its key for a whole section or an unknown
    key; a missing key's section), and the path written as a person reads it."""
    node = root
    anchor = root  # the key (or list item) that introduced ``node``
    path = ""
    for step_index, step in enumerate(loc):
        last = step_index == len(loc) - 1
        if isinstance(node, yaml.MappingNode) and isinstance(step, str):
            found = next((pair for pair in node.value if str(pair[0].value) == step), None)
            if found is None:
                if last:  # a missing key: name it, point at its section
                    path = f"{path}.{step}" if path else step
                    node = anchor
                continue  # else a union's tag (``postgresql``), not in the file
            path = f"{path}.{step}" if path else step
            key, value = found
            section = isinstance(value, yaml.MappingNode | yaml.SequenceNode)
            node, anchor = (key, key) if last and (key_wanted or section) else (value, key)
        elif isinstance(node, yaml.SequenceNode) and isinstance(step, int):
            path = f"{path}[{step}]"
            if 0 <= step < len(node.value):
                node = anchor = node.value[step]
        elif isinstance(step, int):
            path = f"{path}[{step}]"
    return node, path
