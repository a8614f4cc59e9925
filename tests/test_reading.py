"""Reading TOML strictly: every problem a LoadError on the right line, line numbers exact, time linear."""
from __future__ import annotations

import os
import random
import time
from pathlib import Path

import pytest

from conformance import errors, lines, reading
from conformance.errors import LoadError, RuleViolation
from conformance.lines import LineIndex, first_beyond, max_depth, open_construct, toml_error_position
from conformance.reading import MAX_DEPTH, read_document, shown_path

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib  # type: ignore[no-redef]

CORPUS = Path(__file__).parent / "malformed" / "reading"

# Files tomllib or the reader refuse: name -> (line, key, substring of the message).
# (tests/test_load.py's EXPECTED needs the same entries, as "reading/<name>".)
REFUSED: dict[str, tuple[int, str, str]] = {
    "unterminated_multiline_string.toml": (11, "<toml>", 'multi-line string """ opened on this line is never closed'),
    "unterminated_multiline_literal.toml": (13, "<toml>", "multi-line string ''' opened on this line is never closed"),
    "unclosed_array.toml": (13, "<toml>", "the array '[' opened on this line is never closed"),
    "unclosed_inline_table.toml": (11, "<toml>", "the inline table '{' opened on this line is never closed"),
    "deep_array.toml": (11, "<toml>", "nested more than 32 levels deep"),
    "deep_inline_table.toml": (11, "<toml>", "nested more than 32 levels deep"),
    "byte_order_mark.toml": (1, "<file>", "byte order mark (U+FEFF)"),
    "bare_cr.toml": (6, "<toml>", "bare carriage return (CR without LF) at column 9 is not allowed in TOML"),
    "invalid_utf8.toml": (3, "<file>", "not valid UTF-8: byte 0xe9 at byte offset 37"),
}
# Well-formed TOML whose rule error the loader places with LineIndex: name -> (key path, line).
LOCATED: dict[str, tuple[errors.KeyPath, int]] = {
    "line_separators.toml": (("vector", 0, "vm", "gpaw"), 16),
    "crlf.toml": (("vector", 0, "vm", "gpaw"), 15),
    "tabs_and_quoted_keys.toml": (("vector", 0, "vm", "gpaw"), 15),
    "first_element_on_key_line.toml": (("vector", 0, "initial", "mappings", 2, "gfn"), 16),
}


def _write(path: Path, content: str | bytes) -> Path:
    path.write_bytes(content.encode("utf-8") if isinstance(content, str) else content)
    return path


def _refused(tmp_path: Path, content: str | bytes) -> LoadError:
    with pytest.raises(LoadError) as info:
        read_document(_write(tmp_path / "t.toml", content))
    err = info.value
    assert "\n" not in err.message and str(err) == f"{err.path}:{err.line}: {err.key}: {err.message}"
    return err


def _where(err: LoadError) -> tuple[int, str]:
    return err.line, err.key


# ---------------------------------------------------------------- the corpus


def test_every_corpus_file_has_an_expectation():
    assert {p.name for p in CORPUS.glob("*.toml")} == set(REFUSED) | set(LOCATED)


def test_corpus_is_byte_exact():
    """git must not touch the CRs, the BOM or the bad byte (the directory's .gitattributes says -text)."""
    assert b"\r\n" in (CORPUS / "crlf.toml").read_bytes()
    assert b'"v"\rdescription' in (CORPUS / "bare_cr.toml").read_bytes()
    assert (CORPUS / "byte_order_mark.toml").read_bytes().startswith(b"\xef\xbb\xbf")
    assert b"\xe9" in (CORPUS / "invalid_utf8.toml").read_bytes()


@pytest.mark.parametrize("name", sorted(REFUSED))
def test_corpus_refused(name):
    line, key, substring = REFUSED[name]
    with pytest.raises(LoadError) as info:
        read_document(CORPUS / name)
    assert (info.value.line, info.value.key) == (line, key), str(info.value)
    assert substring in info.value.message, str(info.value)


@pytest.mark.parametrize("name", sorted(LOCATED))
def test_corpus_located(name):
    path, line = LOCATED[name]
    doc = read_document(CORPUS / name)
    assert doc.line(path) == line
    err = doc.error(RuleViolation(path, "wrong"))
    assert (err.line, err.key) == (line, errors.render(path))


# ---------------------------------------------------------------- 1. only LF ends a line

SEPARATORS = ["\x0b", "\x0c", "\x1c", "\x1d", "\x1e", "\x85", "\u2028", "\u2029"]


@pytest.mark.parametrize("sep", SEPARATORS, ids=[f"U+{ord(s):04X}" for s in SEPARATORS])
def test_line_index_ignores_other_line_separators(sep):
    text = (f"a = 1 # x{sep}y{sep}\nb = 'p{sep}q'\nc = \"\"\"{sep}\n{sep}\"\"\"\n"
            f"[t] # {sep}\nd = [\n 1, # {sep}\n 2,\n]\n")
    index = LineIndex(text)
    paths = [("a",), ("b",), ("c",), ("t",), ("t", "d"), ("t", "d", 0), ("t", "d", 1)]
    assert [index.line(path) for path in paths] == [1, 2, 3, 5, 6, 7, 8]


def test_rule_error_after_u2028_comment_is_on_its_line(tmp_path):
    text = "# one\u2028two\u2029three\x85four\nx = 1\n\n[t]\ny = 'a\u2028b'\nz = 2\n"
    doc = read_document(_write(tmp_path / "t.toml", text))
    assert doc.data["t"]["y"] == "a\u2028b"
    err = doc.error(RuleViolation(("t", "z"), "bad z"))
    assert (err.line, err.key, err.message) == (6, "t.z", "bad z")


def test_syntax_error_after_u2028_comment(tmp_path):
    err = _refused(tmp_path, "a = 1 # \u2028\u2028\nb = '\u2028'\nc = = 2\n")
    assert _where(err) == (3, "<toml>") and err.message == "Invalid value"


@pytest.mark.parametrize("sep", ["\x0b", "\x0c", "\x1c"])
def test_control_separator_in_a_comment_is_refused_on_its_line(tmp_path, sep):
    err = _refused(tmp_path, f"a = 1\nb = 2 # {sep}\nc = 3\n")
    assert _where(err) == (2, "<toml>") and "invalid character" in err.message


def test_end_of_document_line_ignores_u2028(tmp_path):
    err = _refused(tmp_path, "# \u2028\u2028\u2028\na = 1\nb = ")
    assert _where(err) == (3, "<toml>") and err.message == "Invalid value (at end of document)"


# ---------------------------------------------------------------- 2. what is still open at the end of the document


@pytest.mark.parametrize("content, line, substring", [
    ('a = 1\nb = """\nxx\nyy\n', 2, 'the multi-line string """ opened on this line is never closed'),
    ('a = 1\nb = """abc\\"""\n', 2, 'multi-line string """'),  # an escaped quote does not close it
    ("a = 1\n\nb = '''x\n", 3, "the multi-line string ''' opened on this line is never closed"),
    ('a = [\n  1,\n  """x\n', 3, 'multi-line string """'),  # the string, not the array around it
    ("a = [\n 1,\n [2,\n  3],\n\n\n", 1, "the array '[' opened on this line is never closed"),
    ("a = [\n 1,\n [2,\n  3,\n", 3, "the array '[' opened"),  # the innermost bracket
    ('a = [ "]", # ]\n  1,\n', 1, "the array '['"),  # brackets in strings and comments do not close it
    ("a = 1\nb = { x = [1,\n 2]", 2, "the inline table '{' opened on this line is never closed"),
    ("a = 1\n[t", 2, "the table header opened on this line is never closed"),
    ("a = 1\n  [[t", 2, "the table header opened on this line is never closed"),
    ("a = [\n  [1,\n", 2, "the array '[' opened on this line is never closed"),
])
def test_unclosed_at_end_of_document(tmp_path, content, line, substring):
    err = _refused(tmp_path, content)
    assert _where(err) == (line, "<toml>") and "at end of document" in err.message
    assert substring in err.message


@pytest.mark.parametrize("content, line", [
    ("a = 1\nb = ", 2),
    ("a = 1\nb = 'abc", 2),
    ('a = 1\nb = "abc', 2),
])
def test_other_errors_at_end_of_document_name_the_last_line(tmp_path, content, line):
    err = _refused(tmp_path, content)
    assert _where(err) == (line, "<toml>") and err.message.endswith("(at end of document)")


def test_toml_error_position():
    assert toml_error_position("Invalid value (at line 7, column 3)", "") == (7, "Invalid value")
    assert toml_error_position("no position", "a\nb") == (0, "no position")
    assert toml_error_position("Invalid value (at end of document)", "a = 1\n\n\n") == \
        (1, "Invalid value (at end of document)")
    assert toml_error_position("Invalid value (at end of document)", "") == (1, "Invalid value (at end of document)")


def test_open_construct():
    assert open_construct('a = [1, "[", \'{\', """\n[\n"""] # [\n') is None
    assert open_construct("a = '''x''''' \nb = [") == (2, "the array '[' opened on this line is never closed")
    assert open_construct('a = """x""""" \nb = """') == \
        (2, 'the multi-line string """ opened on this line is never closed')


# ---------------------------------------------------------------- 3. invalid UTF-8


@pytest.mark.parametrize("content, line, substring", [
    (b"\xff = 1\n", 1, "byte 0xff at byte offset 0 (column 1 in bytes): invalid start byte"),
    (b"a = 1\r\nb = 2\r\nc = '\xc3'\r\n", 3, "byte 0xc3 at byte offset 19 (column 6 in bytes)"),
    (b"a = '\xc3\xa9'\n# ok so far\nb = '\xed\xa0\x80'\n", 3, "byte 0xed at byte offset 26"),  # an encoded surrogate
    (b"a = 1\n" * 1000 + b"b = 2 # \x80\n", 1001, "byte 0x80 at byte offset 6008 (column 9 in bytes)"),
])
def test_invalid_utf8(tmp_path, content, line, substring):
    err = _refused(tmp_path, content)
    assert _where(err) == (line, "<file>") and err.message.startswith("not valid UTF-8: ")
    assert substring in err.message


# ---------------------------------------------------------------- 4. bare CR


@pytest.mark.parametrize("content, line, column", [
    ('a = 1\nid = "v"\rdescription = "d"\n', 2, 9),  # tomllib itself accepts this one
    ("a = 1\r\nb = 2\r\r\nc = 3\r\n", 2, 6),  # CR CR LF: the first is bare
    ("a = 1\nb = 'x\ry'\n", 2, 7),
    ('a = """\nx\ry"""\n', 2, 2),
    ("a = 1 # c\r\n# d\re\n", 2, 4),
    ("a = 1\n\r", 2, 1),
])
def test_bare_cr(tmp_path, content, line, column):
    err = _refused(tmp_path, content)
    assert _where(err) == (line, "<toml>")
    assert err.message == f"bare carriage return (CR without LF) at column {column} is not allowed in TOML"


def test_crlf_is_not_a_bare_cr(tmp_path):
    doc = read_document(_write(tmp_path / "t.toml", 'a = 1\r\nb = """x\r\ny"""\r\n'))
    assert doc.data == {"a": 1, "b": "x\ny"}


def test_syntax_error_before_a_bare_cr_comes_first(tmp_path):
    err = _refused(tmp_path, "a = 1\nb = = 2\nc = 3\rd = 4\n")
    assert _where(err) == (2, "<toml>") and err.message == "Invalid value"


def test_bare_cr_before_a_syntax_error_comes_first(tmp_path):
    err = _refused(tmp_path, "a = 1\rb = 2\nc = = 3\n")
    assert _where(err) == (1, "<toml>") and "bare carriage return" in err.message


# ---------------------------------------------------------------- 5. nesting


@pytest.mark.parametrize("value", [
    "[" * 100_000 + "]" * 100_000,
    "{ a = " * 100_000 + "1" + " }" * 100_000,
    "[{ a = " * 50_000 + "1" + " }]" * 50_000,
    "[" * 100_000,  # never closed either
])
def test_deep_nesting_is_refused_where_it_goes_too_deep(tmp_path, value):
    err = _refused(tmp_path, f"a = 1\n\n# [[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[\nflags = {value}\n")
    assert _where(err) == (4, "<toml>") and err.message == "arrays and inline tables nested more than 32 levels deep"


def test_nesting_is_counted_across_lines(tmp_path):
    err = _refused(tmp_path, "a = " + "[\n" * 40 + "]\n" * 40)
    assert _where(err) == (MAX_DEPTH + 1, "<toml>")


def test_nesting_up_to_the_bound_is_read(tmp_path):
    assert MAX_DEPTH == 32
    doc = read_document(_write(tmp_path / "t.toml", "a = " + "[" * MAX_DEPTH + "]" * MAX_DEPTH + "\n"))
    value, depth = doc.data["a"], 1
    while value:
        value, depth = value[0], depth + 1
    assert depth == MAX_DEPTH
    assert _where(_refused(tmp_path, "a = " + "[" * (MAX_DEPTH + 1) + "]" * (MAX_DEPTH + 1) + "\n")) == (1, "<toml>")


def test_brackets_in_strings_and_comments_do_not_nest(tmp_path):
    deep = "[" * 100 + "{" * 100
    text = f"a = '{deep}'\nb = \"{deep}\\\"{deep}\"\nc = '''\n{deep}\n'''\nd = \"\"\"{deep}\"\"\"\n# {deep}\ne = [1]\n"
    assert read_document(_write(tmp_path / "t.toml", text)).data["e"] == [1]
    assert max_depth(text) == 1


def test_syntax_error_before_deep_nesting_comes_first(tmp_path):
    err = _refused(tmp_path, "a = 1\nb = = 2\nflags = " + "[" * 100_000 + "]" * 100_000 + "\n")
    assert _where(err) == (2, "<toml>") and err.message == "Invalid value"


def test_recursion_error_is_a_load_error(tmp_path, monkeypatch):
    monkeypatch.setattr(reading, "MAX_DEPTH", 10**9)  # let it reach tomllib
    err = _refused(tmp_path, "a = 1\nb = " + "[" * 100_000 + "]" * 100_000 + "\n")
    assert _where(err) == (2, "<toml>") and "nested too deeply for the TOML parser (100000 levels)" in err.message


def test_depth_helpers():
    text = "[[t]]\na = [ [ '[[[' ], { b = [ ] } ]  # [[[[\n"
    assert max_depth(text) == 3
    assert first_beyond(text, 2) == text.index("[ ]")
    assert first_beyond(text, 3) is None
    assert max_depth("") == 0 and max_depth("]]] [") == 0


# ---------------------------------------------------------------- 6. file names that are not UTF-8


def _bad_name(tmp_path: Path, content: bytes) -> bytes:
    raw = os.fsencode(tmp_path) + b"/bad\xff\n.toml"
    fd = os.open(raw, os.O_CREAT | os.O_WRONLY | os.O_TRUNC, 0o644)
    os.write(fd, content)
    os.close(fd)
    return raw


def test_non_utf8_file_name_is_read(tmp_path):
    raw = _bad_name(tmp_path, b"a = 1\n")
    for path in (os.fsdecode(raw), Path(os.fsdecode(raw)), raw):
        doc = read_document(path)
        assert doc.data == {"a": 1}
        assert doc.path.endswith("/bad\\xff\\n.toml")
        doc.path.encode("utf-8")


def test_non_utf8_file_name_in_errors(tmp_path):
    raw = _bad_name(tmp_path, b"a = = 1\n")
    with pytest.raises(LoadError) as info:
        read_document(os.fsdecode(raw))
    assert str(info.value).encode("utf-8").endswith(b"/bad\\xff\\n.toml:1: <toml>: Invalid value")
    with pytest.raises(LoadError) as info:
        read_document(os.fsdecode(raw) + "-missing")
    assert _where(info.value) == (0, "<file>") and info.value.message == "cannot read: No such file or directory"
    str(info.value).encode("utf-8")


def test_shown_path():
    assert shown_path("suites/a b/é.toml") == "suites/a b/é.toml"
    assert shown_path(Path("x.toml")) == "x.toml"
    assert shown_path(os.fsdecode(b"a\xff\xfe.toml")) == "a\\xff\\xfe.toml"
    assert shown_path("tab\there\u2028.toml") == "tab\\there\\u2028.toml"


def test_unreadable_paths(tmp_path):
    with pytest.raises(LoadError) as info:
        read_document(tmp_path)
    assert _where(info.value) == (0, "<file>") and "cannot read" in info.value.message


# ---------------------------------------------------------------- 8. byte order mark


def test_tomllib_rejects_a_bom():
    with pytest.raises(tomllib.TOMLDecodeError):
        tomllib.loads("\ufeffa = 1\n")


def test_bom_is_refused_at_line_one(tmp_path):
    err = _refused(tmp_path, "\ufeffa = 1\n")
    assert _where(err) == (1, "<file>") and "byte order mark (U+FEFF)" in err.message


def test_bom_elsewhere_is_a_syntax_error_on_its_line(tmp_path):
    assert _where(_refused(tmp_path, "a = 1\n\ufeffb = 2\n")) == (2, "<toml>")


# ---------------------------------------------------------------- 9. line numbers of key paths


def test_crlf_line_index(tmp_path):
    text = ("top = 1\n[[vector]]\nid = 'v'\ns = '''\n[[vector]]\n'''\nm = [\n  { a = 1 },\n  { a = 2 },\n"
            "  { a = 3 },  # c\n  [3,\n   4],\n]\n[[vector.step]]\nop = \"x\"\n[[vector]]\n").replace("\n", "\r\n")
    doc = read_document(_write(tmp_path / "t.toml", text))
    assert doc.data["vector"][0]["s"] == "[[vector]]\n"
    assert doc.line(("top",)) == 1
    assert doc.line(("vector", 0, "id")) == 3
    assert doc.line(("vector", 0, "m")) == 7
    assert [doc.line(("vector", 0, "m", k)) for k in range(4)] == [8, 9, 10, 11]
    assert doc.line(("vector", 0, "step", 0, "op")) == 15
    assert doc.line(("vector", 1)) == 16


def test_tabs_and_quoted_keys():
    text = ('\t[ t . "u.v" ]\t# c\n\ta\t=\t1\n\t"b\\u0041\\"" = 2\n\'c.d\'.e = 3\n"" = 4\n'
            'f = {\tg = 1,\t"h.i" = [\n 1,\n\t2 ] }\n')
    index = LineIndex(text)
    assert index.line(("t", "u.v")) == 1 and index.line(("t",)) == 1
    assert index.line(("t", "u.v", "a")) == 2
    assert index.line(("t", "u.v", 'bA"')) == 3
    assert index.line(("t", "u.v", "c.d", "e")) == 4 and index.line(("t", "u.v", "c.d")) == 4
    assert index.line(("t", "u.v", "")) == 5
    assert index.line(("t", "u.v", "f", "h.i", 1)) == 8


def test_first_element_on_the_keys_line():
    text = "m = [ { a = 1 },\n  { b = 2 },\n  3, 4,\n  [5,\n   6],\n  '''x\ny''', 7\n]\nn = 1\n"
    index = LineIndex(text)
    assert [index.line(("m", k)) for k in range(7)] == [1, 2, 3, 3, 4, 6, 7]
    assert index.line(("m", 4, 1)) == 5
    assert index.line(("n",)) == 9


def test_nested_arrays_in_inline_tables():
    text = "step = [{ op = 'zap', expect = { mappings = [\n  { gfn = 1 },\n  { gfn = 2 },\n] } }]\nx = 1\n"
    index = LineIndex(text)
    assert index.line(("step", 0, "expect", "mappings")) == 1
    assert index.line(("step", 0, "expect", "mappings", 1, "gfn")) == 3
    assert index.line(("x",)) == 5


def test_headers_open_their_implicit_tables():
    index = LineIndex("[a]\nx = 1\n[b.c.d]\n[[e.f]]\n[[e.f]]\n[e.f.g]\ny.z = 2\n")
    assert index.line(("b",)) == 3 and index.line(("b", "c")) == 3
    assert index.line(("e", "f")) == 4 and index.line(("e", "f", 1)) == 5
    assert index.line(("e", "f", 1, "g", "y", "z")) == 7 and index.line(("e", "f", 1, "g", "y")) == 7


def test_runs_of_one_line_elements():
    body = "".join(f"  {{ gfn = {k}, level = '4K', s = \"a,[b]\" }},\n" for k in range(1000))
    text = f"x = 0\nm = [\n{body}  # a comment\n{body}  {{ gfn = 1 }}, [2], 3\n]\ny = 1\n"
    index = LineIndex(text)
    assert [index.line(("m", k)) for k in (0, 500, 999)] == [3, 503, 1002]
    assert [index.line(("m", k, "gfn")) for k in (1000, 1999)] == [1004, 2003]
    assert [index.line(("m", k)) for k in (2000, 2001, 2002)] == [2004] * 3
    assert index.line(("m", 2003)) == 2  # no such element: the array's line
    assert index.line(("y",)) == 2006


def test_unknown_paths_fall_back():
    index = LineIndex("a = 1\n[b]\nc = [1,\n 2]\n")
    assert index.line(("b", "c", 5)) == 3
    assert index.line(("b", "zz", 0)) == 2
    assert index.line(("nowhere",)) == 0 and index.line(()) == 0


def test_long_key_paths_stay_linear():
    parts = 200_000
    start = time.perf_counter()
    dotted = LineIndex("a" + ".a" * parts + " = 1\nb = 2\n")
    header = LineIndex("[a" + ".a" * parts + "]\nb = 2\n[c]\nd = 3\n")
    assert time.perf_counter() - start < 5
    assert dotted.line(("a",) * (parts + 1)) == 1 and dotted.line(("b",)) == 2  # its first 64 parts are indexed
    assert header.line(("a",) * parts + ("b",)) == 0 and header.line(("c", "d")) == 4  # nothing under it is


def test_deep_values_stay_linear():
    start = time.perf_counter()
    index = LineIndex("a = " + "[\n" * 100_000 + "]\n" * 100_000 + "b = 1\n")
    assert time.perf_counter() - start < 10
    assert index.line(("a", 0)) == 2 and index.line(("a", 0, 0)) == 3 and index.line(("b",)) == 200_001


def test_render_and_key_come_from_errors():
    assert lines.render is errors.render and lines.Key is errors.Key


# ---------------------------------------------------------------- 7. speed and an oracle for the fast paths


def test_a_large_mappings_array_indexes_fast():
    count = 200_000
    text = "[[vector]]\n[vector.initial]\nmappings = [\n" + "".join(
        f'  {{ root = "direct", gfn = 0x{k:x}, level = "4K" }},\n' for k in range(count)) + "]\n"
    start = time.perf_counter()
    index = LineIndex(text)
    assert time.perf_counter() - start < 5  # about 0.1 s; 0.4 s for the 50 MB, 1M-line file
    path = ("vector", 0, "initial", "mappings")
    assert [index.line(path + (k, "gfn")) for k in (0, 1, count - 1)] == [4, 5, count + 3]


def _generated(rng: random.Random) -> tuple[str, dict[errors.KeyPath, int]]:
    """A document with its lines known: arrays laid out every which way."""
    out: list[str] = []
    expected: dict[errors.KeyPath, int] = {}
    newline = rng.choice(["\n", "\r\n"])

    def line() -> int:
        return "".join(out).count("\n") + 1

    def value(path: errors.KeyPath, depth: int) -> None:
        expected[path] = line()
        kind = rng.choice(["scalar", "string", "ml", "table", "array"] if depth < 3 else ["scalar", "string"])
        if kind == "scalar":
            out.append(rng.choice(["1", "0x1f", "true", "1979-05-27 07:32:00", "-inf"]))
        elif kind == "string":
            out.append(rng.choice(['"a,]}#"', "'[{'", '"q\\"[,"', '""']))
        elif kind == "ml":
            out.append(rng.choice(['"""x' + newline + '],"""', "'''" + newline + "[" + newline + "'''"]))
        elif kind == "table":
            out.append("{ ")
            for k in range(rng.randrange(3)):
                out.append(f"k{k} = " if rng.random() < 0.8 else f'"k{k}" = ')
                value(path + (f"k{k}",), depth + 1)
                out.append(", ")
            out.append("z = 0 }")
        else:
            out.append("[")
            for k in range(rng.randrange(5)):
                out.append(rng.choice(["", " ", newline + "  ", " # c ]" + newline + "\t"]))
                value(path + (k,), depth + 1)
                out.append(rng.choice([",", " ,", "," + newline]))
            out.append(rng.choice(["]", newline + "]"]))

    for n in range(rng.randrange(1, 8)):
        out.append(rng.choice(["", "\t", newline, "# ] } \"" + newline]) + f"v{n} = ")
        value((f"v{n}",), 0)
        out.append(rng.choice(["", " # [ { '"]) + newline)
    return "".join(out), expected


@pytest.mark.parametrize("seed", range(int(os.environ.get("ORACLE_SEEDS", "300"))))
def test_line_index_oracle(seed):
    rng = random.Random(seed)
    text, expected = _generated(rng)
    tomllib.loads(text)  # the generator writes valid TOML
    index = LineIndex(text)
    wrong = {path: (index.line(path), line) for path, line in expected.items() if index.line(path) != line}
    assert not wrong, text


def _big_file(tmp_path: Path, lines_: int) -> Path:
    path = tmp_path / "big.toml"
    with open(path, "w", encoding="utf-8") as out:
        out.write("[suite]\nformat = 1\n\n[[vector]]\n[vector.initial]\nmappings = [\n")
        out.writelines(f'  {{ root = "direct", gfn = 0x{k:x}, level = "4K" }},\n' for k in range(lines_))
        out.write("]\n")
    return path


@pytest.mark.skipif(not os.environ.get("CONFORMANCE_BIG"), reason="set CONFORMANCE_BIG=1: a 50 MB file")
def test_big_file_timings(tmp_path):
    text = _big_file(tmp_path, 1_000_000).read_text(encoding="utf-8")
    start = time.perf_counter()
    assert reading._precheck(text) is None
    checked = time.perf_counter()
    index = LineIndex(text)
    indexed = time.perf_counter()
    assert index.line(("vector", 0, "initial", "mappings", 999_999)) == 1_000_006
    print(f"\n{len(text) / 1e6:.0f} MB: checks {checked - start:.2f} s, line index {indexed - checked:.2f} s")
    assert checked - start < 2 and indexed - checked < 3
