"""``marinade.explain``: what pickling an object would capture, with sizes."""

from __future__ import annotations

import json
import math
import os
import threading

import pytest

import marinade


def _by_path(explanation, path):
    for part in explanation.root.walk():
        if part.path == path:
            return part
    raise AssertionError(f"no part {path!r} in\n{explanation}")


def test_closure_capturing_a_big_object_is_the_first_thing_shown():
    numpy = pytest.importorskip("numpy")
    frame = numpy.zeros(2_000_000)  # 16 MB: the classic surprise
    table = {"a": list(range(100))}

    def helper(x):
        return math.sqrt(x)

    def make():
        cache = frame
        n = 3

        def handler(x, scale=2.0):
            return helper(x) + cache.sum() * n + len(table) + os.getpid()
        return handler

    handler = make()
    e = marinade.explain(handler)
    biggest = e.largest(1)[0]
    assert biggest.path == "obj.__closure__[0].cell_contents"
    assert biggest.label == "closure cache" and biggest.type == "numpy.ndarray"
    assert biggest.size >= frame.nbytes
    # by value / by reference decisions, and what each part is
    assert e.root.decision == "by value"
    assert _by_path(e, "obj.__globals__['os']").decision == "by reference"
    assert _by_path(e, "obj.__globals__['os']").detail == "import os"
    # (in a test function, helper and table are closure variables, sorted by name)
    inner = _by_path(e, "obj.__closure__[1].cell_contents")
    assert inner.label == "closure helper" and inner.decision == "by value"
    assert _by_path(e, "obj.__closure__[1].cell_contents.__globals__['math']").decision \
        == "by reference"
    assert _by_path(e, "obj.__closure__[2].cell_contents").label == "closure n"
    assert _by_path(e, "obj.__defaults__[0]").size > 0
    assert _by_path(e, "obj.__code__").type == "code"
    # The sizes are real: what dumps produces (an array's buffer is counted in place,
    # framed a little differently than in-band), exactly so without buffers.
    assert abs(e.root.size - len(marinade.dumps(handler))) < 64
    assert inner.size == len(marinade.dumps(helper))
    text = str(e)
    assert text.splitlines()[0].startswith("obj: function")
    assert "largest parts:" in text and "obj.__closure__[0].cell_contents" in text
    assert json.loads(json.dumps(e.as_dict()))["largest"][0]["path"] == biggest.path


def test_unpicklable_parts_are_named_by_the_same_path_as_the_error():
    lock = threading.Lock()

    def uses_lock():
        return lock

    e = marinade.explain(uses_lock)
    part = _by_path(e, "obj.__closure__[0].cell_contents")
    assert part.decision == "cannot pickle" and part.size is None
    with pytest.raises(marinade.PicklingError) as info:
        marinade.dumps(uses_lock)
    assert part.path in str(info.value)  # the path notation is shared
    assert "cannot pickle" in str(e)


def test_importable_objects_are_by_reference_and_not_expanded():
    e = marinade.explain(os.path.join)
    assert e.root.decision == "by reference" and e.root.children == []
    assert e.root.size == len(marinade.dumps(os.path.join))
    e = marinade.explain(type({}.keys()))  # no module names it: pickled as type(sample)
    assert e.root.decision == "by reference"
    assert e.root.detail == "type of a sample: type(dict.keys({}))"


def test_classes_and_containers():
    class Model:
        weights = bytes(50_000)

        def predict(self, x):
            return math.floor(x)

    e = marinade.explain({"model": Model, "items": [b"x" * 10_000, 1, 2, 3]}, name="config")
    model = _by_path(e, "config['model']")
    assert model.decision == "by value" and model.type.startswith("class ")
    weights = _by_path(e, "config['model'].weights")
    assert weights.size >= 50_000
    assert _by_path(e, "config['model'].predict").decision == "by value"
    items = _by_path(e, "config['items']")
    # The big item is shown, the small ones folded into "more".
    assert [p.path for p in items.children] == ["config['items'][0]"]
    assert items.more == 3
    # depth bounds the walk
    shallow = marinade.explain({"model": Model}, depth=1)
    assert all(not p.children for p in shallow.root.children)
