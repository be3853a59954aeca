"""marinade demo: ship a lambda, a closure and a class to a fresh interpreter.

This script runs as ``__main__``, so plain ``pickle`` can only store its
functions and classes *by reference* ("__main__.Account"), which a fresh
process cannot resolve. marinade stores them by value instead. The consumer
below runs in a brand-new interpreter, in a temporary folder where this file
cannot be imported, and loads the payload with plain ``pickle.loads``.
"""

import os
import pickle
import subprocess
import sys
import tempfile
import textwrap

import marinade

RATE = 0.05  # a global: shipped because `Account.add_interest` uses it


def make_counter(start):
    """A closure with mutable state (a nonlocal cell)."""
    count = start

    def counter():
        nonlocal count
        count += 1
        return count

    return counter


class Account:
    """A class from __main__: methods, a property, a global, zero-argument super()."""

    def __init__(self, owner, balance=0.0):
        self.owner = owner
        self.balance = balance

    def add_interest(self):
        self.balance = round(self.balance * (1 + RATE), 2)
        return self

    @property
    def summary(self):
        return f"{self.owner}: {self.balance:.2f}"

    def __repr__(self):
        return f"Account({self.owner!r}, {self.balance})"


class SavingsAccount(Account):
    def add_interest(self):
        super().add_interest()  # zero-argument super() needs the rebuilt __class__ cell
        return super().add_interest()


def main():
    square = lambda x: x * x
    counter = make_counter(10)
    counter()  # state 11 travels with the closure
    payload = {"square": square, "counter": counter, "Account": Account,
               "alice": SavingsAccount("alice", 100.0)}

    # What plain pickle does with the same objects:
    try:
        pickle.dumps(square)
    except Exception as exc:  # noqa: BLE001 - shown to the user
        print(f"plain pickle: {type(exc).__name__}: {exc}")

    blob = marinade.dumps(payload)
    print(f"marinade payload: {len(blob)} bytes")

    consumer = textwrap.dedent("""
        import pickle, sys
        objs = pickle.loads(sys.stdin.buffer.read())   # plain pickle on the loading side
        print("  square(12)          ->", objs["square"](12))
        print("  counter(), counter() ->", objs["counter"](), objs["counter"]())
        bob = objs["Account"]("bob", 50.0).add_interest()
        print("  Account('bob', 50).add_interest().summary ->", bob.summary)
        print("  alice (SavingsAccount, two interest steps) ->", objs["alice"].add_interest().summary)
        try:
            import __main__; __main__.Account
        except AttributeError:
            print("  (the consumer's __main__ has no Account: it came by value)")
    """)
    with tempfile.TemporaryDirectory() as elsewhere:
        print(f"fresh interpreter in {elsewhere}:")
        env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
        subprocess.run([sys.executable, "-c", consumer], input=blob, cwd=elsewhere,
                       env=env, check=True)


if __name__ == "__main__":
    main()
