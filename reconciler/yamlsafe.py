"""Load small YAML documents safely: size-capped, no aliases, no duplicate keys, with line numbers.

Returns plain data plus a map from JSON path (tuple of keys/indexes) to the 1-based line where
that value starts, so configuration errors can point at a line.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import yaml

MAX_BYTES = 256 * 1024
MAX_NODES = 10_000

Path_ = tuple[str | int, ...]


class YamlError(ValueError):
    """The document is not acceptable YAML; `line` is 1-based when known."""

    def __init__(self, message: str, line: int | None = None) -> None:
        super().__init__(message)
        self.line = line


@dataclass(frozen=True)
class Document:
    """Parsed data and where each value sits in the file."""

    data: Any
    lines: dict[Path_, int]

    def line_of(self, path: Path_) -> int | None:
        """Line of the value at `path`, or of its nearest located parent."""
        while True:
            if path in self.lines:
                return self.lines[path]
            if not path:
                return None
            path = path[:-1]


class _Loader(yaml.SafeLoader):
    """SafeLoader that refuses anchors and aliases (alias bombs) outright."""

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node | None:
        event = self.peek_event()  # type: ignore[no-untyped-call]
        mark = getattr(event, "start_mark", None)
        line = mark.line + 1 if mark is not None else None
        if isinstance(event, yaml.AliasEvent):
            raise YamlError("YAML aliases (*name) are not allowed in this file", line)
        if getattr(event, "anchor", None) is not None:
            raise YamlError("YAML anchors (&name) are not allowed in this file", line)
        return super().compose_node(parent, index)


def load(raw: bytes) -> Document:
    """Parse `raw` bytes into a Document; raise YamlError with a line when possible."""
    if len(raw) > MAX_BYTES:
        raise YamlError(f"file is {len(raw)} bytes; the limit is {MAX_BYTES}")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        line = raw[: err.start].count(b"\n") + 1
        raise YamlError(f"file is not valid UTF-8 (byte offset {err.start})", line) from err
    if "\x00" in text:
        raise YamlError("file contains NUL characters", text[: text.index("\x00")].count("\n") + 1)
    try:
        loader = _Loader(text)  # the reader refuses control characters right here
    except yaml.reader.ReaderError as err:
        line = text[: err.position].count("\n") + 1
        raise YamlError(f"unacceptable character #x{err.character:04x} "
                        "(control characters are not allowed)", line) from err
    try:
        node = loader.get_single_node()
    except YamlError:
        raise
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark or err.context_mark
        started = ""
        if err.context_mark and mark and err.context_mark.line != mark.line:
            started = f" ({err.context} at line {err.context_mark.line + 1})"
        raise YamlError(f"malformed YAML: {err.problem or err}{started}",
                        mark.line + 1 if mark else None) from err
    except yaml.YAMLError as err:
        raise YamlError(f"malformed YAML: {err}") from err
    except RecursionError as err:
        raise YamlError("YAML nesting is too deep") from err
    finally:
        loader.dispose()
    lines: dict[Path_, int] = {}
    if node is None:
        return Document(None, lines)
    counter = [0]
    data = _build(node, (), lines, counter)
    return Document(data, lines)


def _build(node: yaml.Node, path: Path_, lines: dict[Path_, int], counter: list[int]) -> Any:
    counter[0] += 1
    if counter[0] > MAX_NODES:
        raise YamlError(f"document has more than {MAX_NODES} values")
    if len(path) > 32:
        raise YamlError("YAML nesting is too deep", node.start_mark.line + 1)
    lines[path] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        out: dict[str, Any] = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode):
                raise YamlError("mapping keys must be plain strings", key_node.start_mark.line + 1)
            key = key_node.value
            if key in out:
                raise YamlError(f"duplicate key {key!r}", key_node.start_mark.line + 1)
            out[key] = _build(value_node, (*path, key), lines, counter)
            lines[(*path, key)] = key_node.start_mark.line + 1
        return out
    if isinstance(node, yaml.SequenceNode):
        return [_build(child, (*path, i), lines, counter) for i, child in enumerate(node.value)]
    constructor = yaml.SafeLoader("")
    line = node.start_mark.line + 1
    try:
        return constructor.construct_object(node, deep=True)
    except yaml.MarkedYAMLError as err:
        raise YamlError(f"bad value: {err.problem or err.context}", line) from err
    except (yaml.YAMLError, ValueError, TypeError, KeyError, IndexError, AttributeError,
            OverflowError) as err:  # PyYAML's constructors crash on e.g. "!!float" or "!!int x"
        raise YamlError(f"bad value for {node.tag}: {str(node.value)[:40]!r}", line) from err
    finally:
        constructor.dispose()
