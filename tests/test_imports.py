"""What code pickled by value imports where it loads.

- ``import urllib.request`` binds ``urllib``; a function reading
  ``urllib.request.Request`` needs the submodule imported where it loads,
  which importing ``urllib`` alone does not do.
- ``from .x import y`` inside a function of a package's ``__init__`` needs the
  package name (``__package__``) in the rebuilt globals.
- Submodules that a C extension registers in ``sys.modules`` while its
  package is imported (``xml.parsers.expat.errors``) travel by reference.
- A module made at run time keeps a working ``__builtins__``.
"""

from __future__ import annotations

import pickle
import xml.parsers.expat

import marinade

from helpers import DUMP, LOAD, run_roundtrip


def test_submodules_reached_through_their_package(tmp_path):
    out = run_roundtrip(tmp_path, f"""
        import sys
        import urllib.request
        import xml.etree.ElementTree
        import email.mime.text

        def fetch_url(url):
            return urllib.request.Request(url).full_url

        class Parser:
            def tag(self, text):
                return xml.etree.ElementTree.fromstring(text).tag
            def one(self): return 1
            def two(self): return 2
            def three(self): return 3

        deep = lambda body: email.mime.text.MIMEText(body).get_payload()
        obj = (fetch_url, Parser, deep)
        {DUMP}
    """, f"""
        import sys
        assert "urllib.request" not in sys.modules and "xml.etree" not in sys.modules
        {LOAD}
        fetch_url, Parser, deep = obj
        print(fetch_url("http://example.com/a"), Parser().tag("<root/>"), deep("hi"))
    """)
    assert out == "http://example.com/a root hi"


def test_submodules_of_a_module_held_in_a_closure(tmp_path):
    # ``import xml.etree.ElementTree`` inside the enclosing function: ``xml``
    # is a closure cell, not a global.
    out = run_roundtrip(tmp_path, f"""
        def make_parser():
            import xml.etree.ElementTree
            import http.cookies

            def parse(text):
                cookie = http.cookies.SimpleCookie("k=v")
                return xml.etree.ElementTree.fromstring(text).tag, cookie["k"].value
            return parse

        obj = make_parser()
        {DUMP}
    """, f"""
        import sys
        assert "xml.etree" not in sys.modules and "http.cookies" not in sys.modules
        {LOAD}
        print(*obj("<leaf/>"))
    """)
    assert out == "leaf v"


def test_relative_import_in_a_package_init(tmp_path):
    out = run_roundtrip(tmp_path, f"""
        import os, sys
        os.makedirs("relpkg", exist_ok=True)
        with open("relpkg/__init__.py", "w") as f:
            f.write("def load():\\n    from .helpers import answer\\n    return answer()\\n"
                    "def load_with_global():\\n    from . import helpers\\n"
                    "    return helpers.answer() + BONUS\\n"
                    "BONUS = 1\\n")
        with open("relpkg/helpers.py", "w") as f:
            f.write("def answer():\\n    return 41\\n")
        sys.path.insert(0, os.getcwd())
        import relpkg
        import marinade
        marinade.register_pickle_by_value(relpkg)
        obj = (relpkg.load, relpkg.load_with_global)
        {DUMP}
    """, f"""
        import os, sys
        os.makedirs("relpkg", exist_ok=True)   # the loader has the package (another copy)
        with open("relpkg/__init__.py", "w") as f:
            f.write("")
        with open("relpkg/helpers.py", "w") as f:
            f.write("def answer():\\n    return 41\\n")
        sys.path.insert(0, os.getcwd())
        {LOAD}
        load, load_with_global = obj
        print(load(), load_with_global())
    """)
    assert out == "41 42"


def test_submodule_registered_by_its_package_travels_by_reference():
    errors = xml.parsers.expat.errors
    assert errors.__spec__ is None  # what made it look like a module made at run time
    data = marinade.dumps(errors)
    assert len(data) < 100  # a reference, not the module's namespace by value
    assert pickle.loads(data) is errors


def test_module_made_at_run_time_keeps_builtins(tmp_path):
    out = run_roundtrip(tmp_path, f"""
        import types
        mod = types.ModuleType("made_here")
        exec("def size(x):\\n    return len(x)\\n", mod.__dict__)
        obj = mod
        {DUMP}
    """, f"""
        {LOAD}
        print(obj.size("abc"), "__builtins__" in vars(obj))
        exec("y = len('ab')", vars(obj))
        print(obj.y)
    """)
    assert out.splitlines() == ["3 True", "2"]
