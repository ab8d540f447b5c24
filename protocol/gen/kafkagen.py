#!/usr/bin/env python3
"""kafkagen: laminar's Kafka protocol code generator (standard library only).

Reads our own schema files (protocol/schema/FORMAT.md) and emits C: one .h/.c pair per schema
file with the message structs and their init/decode/encode/size functions, the API table
(kafka_api.h/.c), and a test-only sample filler (kafka_sample.h/.c).

Usage:
  kafkagen.py --check FILE...            parse and validate; errors as FILE:LINE: message
  kafkagen.py --out DIR FILE...          generate C into DIR (DIR/protocol/...)
  kafkagen.py --list-outputs FILE...     print the file names --out would write (for CMake)
"""

import os
import re
import sys

PRIMITIVES = {
    # name: (C type, fixed wire size or None, default C literal)
    "bool": ("bool", 1),
    "int8": ("int8_t", 1),
    "int16": ("int16_t", 2),
    "int32": ("int32_t", 4),
    "int64": ("int64_t", 8),
    "uint16": ("uint16_t", 2),
    "uint32": ("uint32_t", 4),
    "float64": ("double", 8),
    "uuid": ("struct kafka_uuid", 16),
    "string": ("struct kafka_str", None),
    "bytes": ("struct kafka_bytes", None),
    "records": ("struct kafka_bytes", None),
}
INT_RANGES = {
    "int8": (-(1 << 7), (1 << 7) - 1),
    "int16": (-(1 << 15), (1 << 15) - 1),
    "int32": (-(1 << 31), (1 << 31) - 1),
    "int64": (-(1 << 63), (1 << 63) - 1),
    "uint16": (0, (1 << 16) - 1),
    "uint32": (0, (1 << 32) - 1),
}
VARLEN = ("string", "bytes", "records")
C_KEYWORDS = set(
    "auto break case char const continue default do double else enum extern float for goto if "
    "inline int long register restrict return short signed sizeof static struct switch typedef "
    "union unsigned void volatile while bool true false errno NULL".split())
SNAKE_RE = re.compile(r"^[a-z][a-z0-9_]*$")
CAMEL_RE = re.compile(r"^[A-Z][A-Za-z0-9]*$")
MAX_VERSION = 32767


class SchemaError(Exception):
    def __init__(self, path, line, msg):
        Exception.__init__(self, "%s:%s: error: %s" % (path, line, msg))
        self.path, self.line, self.msg = path, line, msg


class Versions:
    """An inclusive version range; hi None means open ('N+'); empty means 'none'."""

    def __init__(self, lo, hi, empty=False):
        self.lo, self.hi, self.empty = lo, hi, empty

    @staticmethod
    def parse(text):
        if text == "none":
            return Versions(0, -1, True)
        m = re.match(r"^(\d+)\+$", text)
        if m:
            return Versions(int(m.group(1)), None)
        m = re.match(r"^(\d+)-(\d+)$", text)
        if m:
            lo, hi = int(m.group(1)), int(m.group(2))
            if hi < lo:
                raise ValueError("range %s is empty (end before start)" % text)
            return Versions(lo, hi)
        m = re.match(r"^(\d+)$", text)
        if m:
            return Versions(int(m.group(1)), int(m.group(1)))
        raise ValueError("bad version range '%s' (want N+, N-M, N or none)" % text)

    def top(self):
        return MAX_VERSION if self.hi is None else self.hi

    def intersect(self, other):
        if self.empty or other.empty:
            return Versions(0, -1, True)
        lo = max(self.lo, other.lo)
        hi = min(self.top(), other.top())
        if hi < lo:
            return Versions(0, -1, True)
        return Versions(lo, None if hi == MAX_VERSION else hi)

    def contains(self, v):
        return not self.empty and self.lo <= v <= self.top()

    def covers(self, other):
        """True if every version of other is in self."""
        if other.empty:
            return True
        return not self.empty and self.lo <= other.lo and other.top() <= self.top()

    def __str__(self):
        if self.empty:
            return "none"
        if self.hi is None:
            return "%d+" % self.lo
        if self.lo == self.hi:
            return "%d" % self.lo
        return "%d-%d" % (self.lo, self.hi)


class Field:
    def __init__(self, line):
        self.line = line
        self.name = None
        self.type = None          # the type text as written
        self.is_array = False
        self.elem = None          # primitive name or struct name
        self.struct = None        # Struct for struct / []struct fields (resolved)
        self.versions = None
        self.nullable = Versions(0, -1, True)
        self.tag = None
        self.default = None       # raw default text, or None
        self.ignorable = False
        self.classic = False      # string/bytes/array keep classic encoding in flexible versions
        self.children = []        # inline child fields (raw, before struct building)

    @property
    def is_struct(self):
        return self.elem is not None and self.elem not in PRIMITIVES


class Struct:
    def __init__(self, name, line, shared=False):
        self.name = name
        self.line = line
        self.fields = []
        self.shared = shared
        self.cname = None         # C struct tag without 'struct '


class Section:
    def __init__(self, kind, line):
        self.kind = kind          # 'request', 'response' or 'fields'
        self.line = line
        self.root = None          # Struct


class Schema:
    def __init__(self, path):
        self.path = path
        self.api = None           # CamelCase
        self.header = None        # CamelCase (header files)
        self.key = None
        self.versions = None
        self.flexible = None      # Versions (flexible range) or empty
        self.sections = {}
        self.shared = {}          # name -> Struct
        self.warnings = []

    @property
    def name(self):
        return self.api or self.header

    @property
    def snake(self):
        return camel_to_snake(self.name)

    @property
    def first_flexible(self):
        return -1 if self.flexible.empty else self.flexible.lo


def camel_to_snake(name):
    s = re.sub(r"([A-Z]+)([A-Z][a-z])", r"\1_\2", name)
    s = re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", s)
    return s.lower()


def strip_comment(text):
    # '#' starts a comment unless it sits inside a double-quoted default.
    out, inq = [], False
    for ch in text:
        if ch == '"':
            inq = not inq
        elif ch == "#" and not inq:
            break
        out.append(ch)
    return "".join(out).rstrip()


def tokenize(text, path, lineno):
    toks, i, n = [], 0, len(text)
    while i < n:
        if text[i] in " ":
            i += 1
            continue
        if text[i] == '"':
            j = text.find('"', i + 1)
            if j < 0:
                raise SchemaError(path, lineno, "unterminated string literal")
            toks.append(text[i:j + 1])
            i = j + 1
            continue
        j = i
        while j < n and text[j] != " ":
            j += 1
        toks.append(text[i:j])
        i = j
    return toks


def parse_field_line(toks, path, lineno):
    f = Field(lineno)
    if len(toks) < 3:
        raise SchemaError(path, lineno,
                          "field line needs at least 'name type versions', got '%s'"
                          % " ".join(toks))
    f.name, f.type = toks[0], toks[1]
    if not SNAKE_RE.match(f.name):
        raise SchemaError(path, lineno, "field name '%s' is not snake_case ([a-z][a-z0-9_]*)"
                          % f.name)
    if f.name in C_KEYWORDS:
        raise SchemaError(path, lineno, "field name '%s' is a C keyword or reserved" % f.name)
    t = f.type
    if t.startswith("[]"):
        f.is_array = True
        t = t[2:]
    if t in PRIMITIVES:
        f.elem = t
        if f.is_array and t == "records":
            raise SchemaError(path, lineno, "[]records is not a valid type")
    elif CAMEL_RE.match(t):
        f.elem = t
    else:
        raise SchemaError(path, lineno,
                          "unknown type '%s' (primitives: %s; or []T, or a CamelCase struct name)"
                          % (f.type, " ".join(PRIMITIVES)))
    try:
        f.versions = Versions.parse(toks[2])
    except ValueError as e:
        raise SchemaError(path, lineno, "field '%s': %s" % (f.name, e))
    i = 3
    seen = set()
    while i < len(toks):
        k = toks[i]
        if k in seen:
            raise SchemaError(path, lineno, "field '%s': '%s' given twice" % (f.name, k))
        seen.add(k)
        if k in ("nullable", "tag", "default"):
            if i + 1 >= len(toks):
                raise SchemaError(path, lineno, "field '%s': '%s' needs a value" % (f.name, k))
            val = toks[i + 1]
            i += 2
            if k == "nullable":
                try:
                    f.nullable = Versions.parse(val)
                except ValueError as e:
                    raise SchemaError(path, lineno, "field '%s': nullable: %s" % (f.name, e))
            elif k == "tag":
                if not re.match(r"^\d+$", val):
                    raise SchemaError(path, lineno, "field '%s': tag must be a non-negative "
                                      "integer, got '%s'" % (f.name, val))
                f.tag = int(val)
                if f.tag > 0x7fffffff:
                    raise SchemaError(path, lineno, "field '%s': tag too large" % f.name)
            else:
                f.default = val
        elif k == "ignorable":
            f.ignorable = True
            i += 1
        elif k == "classic":
            f.classic = True
            i += 1
        else:
            raise SchemaError(path, lineno,
                              "field '%s': unknown attribute '%s' (want nullable V, tag N, "
                              "default D, ignorable, classic)" % (f.name, k))
    return f


def check_default(schema, f):
    path, d = schema.path, f.default
    if d is None:
        return
    where = "field '%s': default '%s'" % (f.name, d)
    if f.is_array or f.is_struct:
        if d != "null":
            raise SchemaError(path, f.line, where + ": arrays and structs take only 'default null'")
        if f.nullable.empty:
            raise SchemaError(path, f.line, where + ": 'null' needs a nullable field")
        return
    t = f.elem
    if d == "null":
        if t not in VARLEN:
            raise SchemaError(path, f.line, where + ": only strings/bytes/records can be null")
        if f.nullable.empty:
            raise SchemaError(path, f.line, where + ": 'null' needs a nullable field")
        return
    if t == "bool":
        if d not in ("true", "false"):
            raise SchemaError(path, f.line, where + ": bool default must be true or false")
    elif t in INT_RANGES:
        try:
            v = int(d, 0)
        except ValueError:
            raise SchemaError(path, f.line, where + ": not an integer")
        lo, hi = INT_RANGES[t]
        if not lo <= v <= hi:
            raise SchemaError(path, f.line, where + ": out of range for %s" % t)
    elif t == "float64":
        try:
            float(d)
        except ValueError:
            raise SchemaError(path, f.line, where + ": not a number")
    elif t == "string":
        if not (len(d) >= 2 and d[0] == '"' and d[-1] == '"') or "\\" in d:
            raise SchemaError(path, f.line, where + ': string default must be "text" or null')
    elif t in ("bytes", "records"):
        raise SchemaError(path, f.line, where + ": bytes/records take only 'default null'")
    elif t == "uuid":
        raise SchemaError(path, f.line, where + ": uuid default is always all zeros")


def directive_versions(s, toks, path, lineno, want):
    """The version range of a 'versions' or 'flexible' header directive (toks[0]), given once."""
    if len(toks) != 2:
        raise SchemaError(path, lineno, want)
    if getattr(s, toks[0]) is not None:
        raise SchemaError(path, lineno, "'%s' given twice" % toks[0])
    try:
        return Versions.parse(toks[1])
    except ValueError as e:
        raise SchemaError(path, lineno, str(e))


def parse_file(path, text=None):
    if text is None:
        with open(path, encoding="utf-8") as fp:
            text = fp.read()
    s = Schema(path)
    # Each entry: (indent_level, Field) for body lines, attached to a current block.
    block = None      # ('section', Section) or ('struct', Struct)
    stack = []        # list of Field being parent at each level (level 0 = block root)
    blocks = []
    for lineno, raw in enumerate(text.split("\n"), 1):
        if "\t" in raw:
            raise SchemaError(path, lineno, "tab character; indent with two spaces per level")
        line = strip_comment(raw)
        if not line.strip():
            continue
        indent = len(line) - len(line.lstrip(" "))
        toks = tokenize(line.strip(), path, lineno)
        if indent == 0:
            word = toks[0]
            if word in ("request", "response", "fields"):
                if len(toks) != 1:
                    raise SchemaError(path, lineno, "'%s' must be alone on its line" % word)
                if word in s.sections:
                    raise SchemaError(path, lineno, "section '%s' given twice" % word)
                sec = Section(word, lineno)
                sec.root = Struct(None, lineno)
                s.sections[word] = sec
                block = ("section", sec)
                blocks.append(block)
                stack = [sec.root]
                continue
            if word == "struct":
                if len(toks) != 2 or not CAMEL_RE.match(toks[1]):
                    raise SchemaError(path, lineno, "want 'struct CamelCaseName'")
                if toks[1] in s.shared:
                    raise SchemaError(path, lineno, "struct '%s' defined twice (first at line %d)"
                                      % (toks[1], s.shared[toks[1]].line))
                st = Struct(toks[1], lineno, shared=True)
                s.shared[toks[1]] = st
                block = ("struct", st)
                blocks.append(block)
                stack = [st]
                continue
            if word not in ("api", "header", "key", "versions", "flexible"):
                raise SchemaError(path, lineno, "unknown directive '%s' (want api, header, key, "
                                  "versions, flexible, request, response, fields, struct; field "
                                  "lines are indented)" % word)
            if block is not None:
                raise SchemaError(path, lineno, "directive '%s' after a section began; put "
                                  "api/key/versions/flexible at the top" % word)
            if word in ("api", "header"):
                if len(toks) != 2 or not CAMEL_RE.match(toks[1]):
                    raise SchemaError(path, lineno, "want '%s CamelCaseName'" % word)
                if s.api or s.header:
                    raise SchemaError(path, lineno, "'api'/'header' given twice")
                if word == "api":
                    s.api = toks[1]
                else:
                    s.header = toks[1]
            elif word == "key":
                if len(toks) != 2 or not re.match(r"^\d+$", toks[1]) or int(toks[1]) > 32767:
                    raise SchemaError(path, lineno, "want 'key N' with N in 0..32767")
                if s.key is not None:
                    raise SchemaError(path, lineno, "'key' given twice")
                s.key = int(toks[1])
            elif word == "versions":
                s.versions = directive_versions(s, toks, path, lineno, "want 'versions N-M'")
                if s.versions.empty or s.versions.hi is None:
                    raise SchemaError(path, lineno, "message versions must be a closed range "
                                      "'N-M' or 'N'")
            elif word == "flexible":
                s.flexible = directive_versions(s, toks, path, lineno,
                                                "want 'flexible N+' or 'flexible none'")
                if not s.flexible.empty and s.flexible.hi is not None:
                    raise SchemaError(path, lineno, "flexible must be 'N+' or 'none'")
            else:
                raise SchemaError(path, lineno, "unknown directive '%s' (want api, header, key, "
                                  "versions, flexible, request, response, fields, struct)" % word)
            continue
        # An indented field line.
        if block is None:
            raise SchemaError(path, lineno, "indented field line before any section")
        if indent % 2:
            raise SchemaError(path, lineno, "indent of %d spaces; use two spaces per level"
                              % indent)
        level = indent // 2
        if level > len(stack):
            raise SchemaError(path, lineno, "indented too deep (level %d under level %d)"
                              % (level, len(stack) - 1))
        del stack[level:]
        parent = stack[-1]
        f = parse_field_line(toks, path, lineno)
        if isinstance(parent, Field):
            if not parent.is_struct:
                raise SchemaError(path, lineno, "field '%s' is of type %s and cannot have "
                                  "children" % (parent.name, parent.type))
            parent.children.append(f)
        else:
            parent.fields.append(f)
        stack.append(f)
    validate(s)
    return s


def validate(s):
    p = s.path
    if not (s.api or s.header):
        raise SchemaError(p, 1, "missing 'api Name' (or 'header Name')")
    if s.api and s.key is None:
        raise SchemaError(p, 1, "missing 'key N'")
    if s.header and s.key is not None:
        raise SchemaError(p, 1, "a header file takes no 'key'")
    if s.versions is None:
        raise SchemaError(p, 1, "missing 'versions N-M'")
    if s.flexible is None:
        raise SchemaError(p, 1, "missing 'flexible N+' (or 'flexible none')")
    want = ("fields",) if s.header else ("request", "response")
    for w in want:
        if w not in s.sections:
            raise SchemaError(p, 1, "missing section '%s'" % w)
    for k, sec in s.sections.items():
        if k not in want:
            raise SchemaError(p, sec.line, "section '%s' not allowed in %s file"
                              % (k, "a header" if s.header else "an api"))
    # Build structs: each struct-typed field gets a Struct, inline or shared.
    inline = {}       # (section, name) -> Struct
    used_shared = set()

    def build(struct, section, parent_versions, path_names):
        names = {}
        tags = {}
        for f in struct.fields:
            if f.name in names:
                raise SchemaError(p, f.line, "field '%s' given twice (first at line %d)"
                                  % (f.name, names[f.name].line))
            names[f.name] = f
        for f in struct.fields:
            if f.is_array and f.name + "_count" in names:
                raise SchemaError(p, f.line, "array '%s' clashes with field '%s_count'"
                                  % (f.name, f.name))
            if f.is_struct and (f.name + "_null") in names:
                raise SchemaError(p, f.line, "struct '%s' clashes with field '%s_null'"
                                  % (f.name, f.name))
            eff = f.versions.intersect(parent_versions)
            if f.versions.empty:
                pass
            elif eff.empty:
                s.warnings.append("%s:%d: warning: field '%s' versions %s never overlap %s; it "
                                  "is never on the wire" % (p, f.line, f.name, f.versions,
                                                            parent_versions))
            elif not parent_versions.covers(f.versions.intersect(s.versions)):
                s.warnings.append("%s:%d: warning: field '%s' versions %s go beyond its parent's "
                                  "%s" % (p, f.line, f.name, f.versions, parent_versions))
            if not f.nullable.empty:
                if not (f.is_array or f.is_struct or f.elem in VARLEN):
                    raise SchemaError(p, f.line, "field '%s' of type %s cannot be nullable"
                                      % (f.name, f.type))
                if not f.versions.covers(f.nullable):
                    s.warnings.append("%s:%d: warning: field '%s' nullable %s goes beyond its "
                                      "versions %s" % (p, f.line, f.name, f.nullable, f.versions))
            if f.classic and not (f.is_array or f.elem in VARLEN):
                raise SchemaError(p, f.line, "'classic' applies only to strings, bytes, records "
                                  "and arrays")
            if f.tag is not None:
                if s.flexible.empty:
                    raise SchemaError(p, f.line, "field '%s' has a tag but the message is never "
                                      "flexible" % f.name)
                if f.versions.intersect(s.flexible).empty and not f.versions.empty:
                    raise SchemaError(p, f.line, "tagged field '%s' versions %s do not overlap "
                                      "the flexible versions %s" % (f.name, f.versions,
                                                                    s.flexible))
                if f.classic:
                    raise SchemaError(p, f.line, "a tagged field cannot be 'classic'")
                if f.tag in tags:
                    raise SchemaError(p, f.line, "tag %d used twice in this struct (first by "
                                      "'%s' at line %d)" % (f.tag, tags[f.tag].name,
                                                            tags[f.tag].line))
                tags[f.tag] = f
            check_default(s, f)
            if f.is_struct:
                if f.children:
                    if f.elem in s.shared:
                        raise SchemaError(p, f.line, "struct '%s' has inline fields here and a "
                                          "'struct %s' block at line %d; use one"
                                          % (f.elem, f.elem, s.shared[f.elem].line))
                    key = (section, f.elem)
                    if key in inline:
                        raise SchemaError(p, f.line, "struct '%s' defined inline twice in '%s' "
                                          "(first at line %d); define it once in a 'struct' "
                                          "block to share it" % (f.elem, section,
                                                                 inline[key].line))
                    st = Struct(f.elem, f.line)
                    st.fields = f.children
                    inline[key] = st
                    f.struct = st
                    build(st, section, f.versions.intersect(parent_versions),
                          path_names + [f.name])
                else:
                    if f.elem not in s.shared:
                        raise SchemaError(p, f.line, "struct '%s' has no fields: give them "
                                          "indented below, or define 'struct %s' at column 0"
                                          % (f.elem, f.elem))
                    f.struct = s.shared[f.elem]
                    used_shared.add(f.elem)
            elif f.children:
                raise SchemaError(p, f.line, "field '%s' is of type %s and cannot have children"
                                  % (f.name, f.type))

    for name, st in s.shared.items():
        if not st.fields:
            raise SchemaError(p, st.line, "struct '%s' has no fields" % name)
    for name, st in s.shared.items():
        build(st, "struct", s.versions, [name])
    for k in want:
        sec = s.sections[k]
        if not sec.root.fields:
            s.warnings.append("%s:%d: warning: section '%s' has no fields" % (p, sec.line, k))
        build(sec.root, k, s.versions, [])
    for name, st in s.shared.items():
        if name not in used_shared:
            s.warnings.append("%s:%d: warning: struct '%s' is never used" % (p, st.line, name))
    # Inline struct names must not clash with shared struct names in C.
    for (section, name), st in inline.items():
        if name in s.shared:
            raise SchemaError(p, st.line, "struct name '%s' used inline and as a shared struct"
                              % name)
    # Shared structs must not (directly or not) contain themselves.
    def walk(st, seen):
        for f in st.fields:
            if f.struct is not None:
                if f.struct in seen:
                    raise SchemaError(p, f.line, "struct '%s' contains itself" % f.struct.name)
                walk(f.struct, seen + [f.struct])
    for name, st in s.shared.items():
        walk(st, [st])
    s.inline = inline
    return s


def check_set(schemas):
    """Checks across files: unique api keys and names."""
    errs = []
    keys, names = {}, {}
    for s in schemas:
        if s.api:
            if s.key in keys:
                errs.append("%s:1: error: api key %d also used by %s" % (s.path, s.key,
                                                                         keys[s.key].path))
            keys[s.key] = s
        if s.snake in names:
            errs.append("%s:1: error: name '%s' also used by %s" % (s.path, s.name,
                                                                    names[s.snake].path))
        names[s.snake] = s
        stem = os.path.splitext(os.path.basename(s.path))[0]
        if stem != s.snake:
            errs.append("%s:1: error: file should be named %s.schema (from '%s')"
                        % (s.path, s.snake, s.name))
    return errs


def load_all(paths):
    schemas, errs = [], []
    for path in paths:
        try:
            schemas.append(parse_file(path))
        except SchemaError as e:
            errs.append(str(e))
        except OSError as e:
            errs.append("%s: error: %s" % (path, e))
    errs += check_set(schemas)
    return schemas, errs


def main(argv):
    import argparse
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--check", action="store_true", help="only parse and validate")
    ap.add_argument("--out", help="output directory (files go to OUT/protocol/)")
    ap.add_argument("--list-outputs", action="store_true")
    ap.add_argument("-q", "--quiet", action="store_true", help="no warnings")
    ap.add_argument("files", nargs="+")
    a = ap.parse_args(argv)
    schemas, errs = load_all(a.files)
    if not a.quiet:
        for s in schemas:
            for w in s.warnings:
                print(w, file=sys.stderr)
    for e in errs:
        print(e, file=sys.stderr)
    if errs:
        print("kafkagen: %d error(s)" % len(errs), file=sys.stderr)
        return 1
    if a.check:
        for s in schemas:
            print("%s: ok: %s%s versions %s flexible %s" % (
                s.path, s.name, "" if s.key is None else " key %d" % s.key, s.versions,
                s.flexible))
        return 0
    import kafkagen_emit
    if a.list_outputs:
        for name in kafkagen_emit.output_names(schemas):
            print(name)
        return 0
    if not a.out:
        ap.error("--out DIR is required unless --check or --list-outputs")
    kafkagen_emit.emit_all(schemas, a.out)
    return 0


if __name__ == "__main__":
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    sys.exit(main(sys.argv[1:]))
