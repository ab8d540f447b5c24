#!/usr/bin/env python3
"""kafkagen.py --check: malformed schema files are refused with FILE:LINE errors, good ones
pass, and every schema file in protocol/schema/ passes. Run by ctest (test_kafkagen_check)."""
import os
import subprocess
import sys
import tempfile
import unittest

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))
GEN = os.path.join(ROOT, "protocol", "gen", "kafkagen.py")

GOOD = """api Foo
key 999
versions 0-3
flexible 2+
request
  name string 0+
  items []Item 1+ nullable 2+
    id int32 1+
    tags []string 1+
  note string 2+ nullable 2+ tag 0
response
  error_code int16 0+
  leader Leader 3+ tag 1
struct Leader
  leader_id int32 0+ default -1
"""


def check(text, name="foo.schema"):
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, name)
        with open(path, "w") as fp:
            fp.write(text)
        p = subprocess.run([sys.executable, GEN, "--check", path], capture_output=True,
                           text=True)
        return p.returncode, p.stderr.replace(path, "FILE")


class CheckTest(unittest.TestCase):
    def test_good(self):
        rc, err = check(GOOD)
        self.assertEqual(rc, 0, err)
        self.assertEqual(err, "")

    def bad(self, old, new, line, words):
        text = GOOD.replace(old, new, 1)
        self.assertNotEqual(text, GOOD)
        rc, err = check(text)
        self.assertEqual(rc, 1, err)
        self.assertIn("FILE:%d: error:" % line, err)
        for w in words:
            self.assertIn(w, err)

    def test_errors_have_line_numbers(self):
        self.bad("  name string 0+", "  name strang 0+", 6, ["unknown type 'strang'"])
        self.bad("    id int32 1+", "   id int32 1+", 8, ["indent"])
        self.bad("    id int32 1+", "      id int32 1+", 8, ["too deep"])
        self.bad("  name string 0+", "  Name string 0+", 6, ["snake_case"])
        self.bad("  name string 0+", "  name string 0+ nullable", 6, ["needs a value"])
        self.bad("  name string 0+", "  name string 5-2", 6, ["empty"])
        self.bad("  name string 0+", "  name string 0+ bogus", 6, ["unknown attribute"])
        self.bad("  error_code int16 0+", "  error_code int16 0+ nullable 0+", 12,
                 ["cannot be nullable"])
        self.bad("  error_code int16 0+", "  error_code int16 0+ default 99999", 12,
                 ["out of range"])
        self.bad("  error_code int16 0+", "  error_code int16 0+ tag 1", 13, ["tag 1 used twice",
                                                                          "line 12"])
        self.bad("  error_code int16 0+", "  error_code int16 0-1 tag 5", 12,
                 ["do not overlap the flexible"])
        self.bad("  error_code int16 0+", "  error_code int16 0+\n  error_code int32 0+", 13,
                 ["given twice"])
        self.bad("  leader Leader 3+ tag 1", "  leader Missing 3+ tag 1", 13, ["no fields"])
        self.bad("flexible 2+", "flexible 2-3", 4, ["flexible must be"])
        self.bad("key 999", "key x", 2, ["key N"])
        self.bad("  error_code int16 0+", "  error_code int16 0+\n    child int8 0+", 13,
                 ["cannot have children"])
        self.bad("  name string 0+", "\tname string 0+", 6, ["tab"])

    def test_missing_directives(self):
        rc, err = check(GOOD.replace("versions 0-3\n", ""))
        self.assertEqual(rc, 1)
        self.assertIn("missing 'versions", err)
        rc, err = check(GOOD.replace("response\n", "respons\n"))
        self.assertEqual(rc, 1)
        self.assertIn("unknown directive 'respons'", err)

    def test_file_name_must_match(self):
        rc, err = check(GOOD, name="bar.schema")
        self.assertEqual(rc, 1)
        self.assertIn("should be named foo.schema", err)

    def test_repository_schemas(self):
        d = os.path.join(ROOT, "protocol", "schema")
        files = sorted(os.path.join(d, f) for f in os.listdir(d) if f.endswith(".schema"))
        self.assertGreaterEqual(len(files), 6)
        p = subprocess.run([sys.executable, GEN, "--check"] + files, capture_output=True,
                           text=True)
        self.assertEqual(p.returncode, 0, p.stderr)


if __name__ == "__main__":
    unittest.main()
