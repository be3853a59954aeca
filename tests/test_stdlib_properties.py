"""Random graphs of standard-library objects round-trip with their links.

Weak references, proxies and weak containers point into a pool of nodes that
the payload also holds; exceptions are chained at random among themselves.
After a round trip every link must point at the loaded counterpart of what it
pointed at before: the same pool node, the same exception, never a copy.
"""

import argparse
import pickle
import struct
import types
import weakref

import pytest

import marinade

hypothesis = pytest.importorskip("hypothesis")
st = hypothesis.strategies


class Node(argparse.Namespace):
    """Hashable by identity (Namespace compares by value), weakly referable."""

    __hash__ = object.__hash__


def _describe(value, pool: list, errors: list):
    """A comparable description of ``value``; pool nodes and exceptions by index."""
    def index_of(obj, among):
        for i, candidate in enumerate(among):
            if candidate is obj:
                return i
        raise AssertionError(f"{obj!r} is not one of the payload's own objects")

    kind = type(value)
    if kind is Node:
        return ("node", index_of(value, pool))
    if isinstance(value, BaseException):
        return ("exception", index_of(value, errors))
    if kind is weakref.ref:
        return ("ref", _describe(value(), pool, errors))
    if kind is weakref.WeakMethod:
        method = value()
        return ("weak method", _describe(method.__self__, pool, errors), method.__name__)
    if kind is weakref.ProxyType:
        return ("proxy", _describe(value.__sizeof__.__self__, pool, errors))
    if kind is weakref.WeakSet:
        return ("weak set", sorted(_describe(v, pool, errors)[1] for v in value))
    if kind is weakref.WeakValueDictionary:
        return ("weak values", sorted((k, _describe(v, pool, errors)) for k, v in value.items()))
    if kind is weakref.WeakKeyDictionary:
        return ("weak keys", sorted((_describe(k, pool, errors), v) for k, v in value.items()))
    if kind is types.MappingProxyType:
        return ("proxy of", _describe(dict(value), pool, errors))
    if kind in (type({}.keys()), type({}.values()), type({}.items())):
        return (kind.__name__, [_describe(v, pool, errors) for v in value])
    if kind is struct.Struct:
        return ("struct", value.format)
    if kind is list or kind is tuple:
        return (kind.__name__, [_describe(v, pool, errors) for v in value])
    if kind is dict:
        return ("dict", [(k, _describe(v, pool, errors)) for k, v in value.items()])
    return ("atom", value)


def _exception_links(errors: list, pool: list) -> list:
    out = []
    for error in errors:
        out.append((type(error).__name__, error.args,
                    None if error.__cause__ is None else _describe(error.__cause__, pool, errors),
                    None if error.__context__ is None
                    else _describe(error.__context__, pool, errors),
                    error.__suppress_context__))
    return out


@st.composite
def graphs(draw):
    pool = [Node(name=f"n{i}") for i in range(draw(st.integers(1, 4)))]
    errors = [draw(st.sampled_from([ValueError, KeyError, RuntimeError]))(f"e{i}")
              for i in range(draw(st.integers(0, 3)))]
    for error in errors:
        if draw(st.booleans()):
            error.__cause__ = draw(st.sampled_from(errors))  # cycles included
        if draw(st.booleans()):
            error.__context__ = draw(st.sampled_from(errors))
        error.__suppress_context__ = draw(st.booleans())
    node = st.sampled_from(pool)
    leaf = st.one_of(
        st.integers(-5, 5), st.text(max_size=3), node,
        node.map(weakref.ref), node.map(weakref.proxy),
        node.map(lambda n: weakref.WeakMethod(n.__repr__)),
        st.lists(node, max_size=3).map(weakref.WeakSet),
        st.dictionaries(st.text(max_size=2), node, max_size=3).map(weakref.WeakValueDictionary),
        st.dictionaries(node, st.integers(0, 3), max_size=3).map(weakref.WeakKeyDictionary),
        st.sampled_from(["<H", "<HI", "!q"]).map(struct.Struct),
        *([st.sampled_from(errors)] if errors else []),
    )
    tree = st.recursive(leaf, lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.tuples(inner, inner),
        st.dictionaries(st.text(max_size=2), inner, max_size=3),
        st.dictionaries(st.text(max_size=2), inner, max_size=2).map(types.MappingProxyType),
        st.dictionaries(st.text(max_size=2), inner, max_size=2).map(lambda d: d.values()),
    ), max_leaves=8)
    return pool, errors, draw(tree)


def test_random_graphs_keep_their_links(monkeypatch):
    import copyreg

    # tblib (which dask installs) registers its own reducers for these in
    # copyreg, and they win over marinade's (and recurse on a cause cycle).
    for kind in (ValueError, KeyError, RuntimeError, types.TracebackType):
        monkeypatch.delitem(copyreg.dispatch_table, kind, raising=False)

    @hypothesis.settings(max_examples=120, deadline=None, derandomize=True)
    @hypothesis.given(graphs())
    def check(graph):
        pool, errors, tree = graph
        before = (_describe(tree, pool, errors), _exception_links(errors, pool),
                  [vars(n) for n in pool])
        for options in ({}, {"standalone": True}):
            loaded_pool, loaded_errors, loaded_tree = pickle.loads(
                marinade.dumps([pool, errors, tree], **options))
            after = (_describe(loaded_tree, loaded_pool, loaded_errors),
                     _exception_links(loaded_errors, loaded_pool),
                     [vars(n) for n in loaded_pool])
            assert after == before

    check()
