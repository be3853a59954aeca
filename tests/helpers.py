"""Helpers for cross-process tests.

The point of marinade is that a payload produced in one process can be loaded
in another process that does *not* have the producer's code importable.
``run_roundtrip`` runs a producer script as ``__main__`` in one folder, then a
consumer in a different, fresh folder, with the payload handed over through a
file whose path is in the ``MARINADE_PAYLOAD`` environment variable.

Typical use::

    out = run_roundtrip(
        tmp_path,
        producer='''
            import os, marinade
            def f(x):
                return x + 1
            open(os.environ["MARINADE_PAYLOAD"], "wb").write(marinade.dumps(f))
        ''',
        consumer=LOAD + "\\nprint(obj(41))",
    )
    assert out == "42"
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections.abc import Mapping, Sequence
from pathlib import Path

__all__ = [
    "DUMP",
    "LOAD",
    "PAYLOAD_ENV",
    "run_roundtrip",
    "run_script",
    "child_env",
]

PAYLOAD_ENV = "MARINADE_PAYLOAD"

#: Snippet a consumer can start with: loads the payload into ``obj`` using the
#: plain stdlib ``pickle`` (marinade payloads must be loadable by it).
LOAD = "import os, pickle; obj = pickle.loads(open(os.environ['MARINADE_PAYLOAD'], 'rb').read())"

#: Snippet a producer can end with, after binding ``obj``: writes
#: ``marinade.dumps(obj)`` to the payload path.
DUMP = (
    "import os as _os, marinade as _marinade; "
    "open(_os.environ['MARINADE_PAYLOAD'], 'wb').write(_marinade.dumps(obj))"
)


def child_env(env: Mapping[str, str] | None = None, **extra: str) -> dict[str, str]:
    """Environment for a child interpreter.

    Starts from ``os.environ`` without ``PYTHONPATH`` / ``PYTHONSTARTUP`` /
    ``PYTHONHOME`` (so nothing from the test process leaks onto the child's
    ``sys.path``; marinade itself stays importable because it is installed in
    the venv), then applies ``env`` and ``extra``. A value of ``None`` in
    ``env`` removes that variable.
    """
    result = {
        k: v
        for k, v in os.environ.items()
        if k not in ("PYTHONPATH", "PYTHONSTARTUP", "PYTHONHOME", "PYTHONSAFEPATH")
    }
    result["PYTHONFAULTHANDLER"] = "1"
    result.setdefault("PYTHONHASHSEED", "random")
    for k, v in {**(env or {}), **extra}.items():
        if v is None:
            result.pop(k, None)
        else:
            result[k] = v
    return result


def _format_failure(what: str, proc: subprocess.CompletedProcess, *others) -> str:
    parts = [f"{what} exited with code {proc.returncode}"]
    for label, p in ((what, proc), *others):
        if p is None:
            continue
        parts.append(f"--- {label} stdout ---\n{p.stdout}")
        parts.append(f"--- {label} stderr ---\n{p.stderr}")
    return "\n".join(parts)


def run_script(
    tmp_path: Path,
    source: str,
    *,
    python: str = sys.executable,
    env: Mapping[str, str] | None = None,
    timeout: float = 60,
    cwd: Path | str | None = None,
    args: Sequence[str] = (),
    name: str = "script.py",
    flags: Sequence[str] = (),
) -> subprocess.CompletedProcess:
    """Write dedented ``source`` to a script and run it as ``__main__``.

    The script is written to ``cwd / name`` (``cwd`` defaults to
    ``tmp_path / "script"``) and run as ``python -X faulthandler name *args``
    from that folder. Returns the CompletedProcess (text mode) without
    checking the exit code.
    """
    folder = Path(cwd) if cwd is not None else Path(tmp_path) / "script"
    folder.mkdir(parents=True, exist_ok=True)
    script = folder / name
    script.write_text(textwrap.dedent(source), encoding="utf-8")
    return subprocess.run(
        [python, *flags, "-X", "faulthandler", name, *args],
        cwd=folder,
        env=child_env(env),
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )


def run_roundtrip(
    tmp_path: Path,
    producer: str,
    consumer: str,
    *,
    python: str = sys.executable,
    producer_args: Sequence[str] = (),
    env: Mapping[str, str] | None = None,
    timeout: float = 60,
    consumer_python: str | None = None,
    consumer_flags: Sequence[str] = (),
) -> str:
    """Produce a payload in one process, consume it in another; return stdout.

    * ``producer`` (dedented) is written to ``tmp_path/"producer"/"script.py"``
      and run as ``__main__`` from that folder with ``producer_args``. It must
      write its payload bytes to ``os.environ["MARINADE_PAYLOAD"]``
      (``tmp_path/"payload.bin"``).
    * ``consumer`` (dedented) is written to ``tmp_path/"consumer"/"consume.py"``
      and run from that folder, which holds nothing else: the producer's folder
      is not on its ``sys.path`` and ``PYTHONPATH`` is unset, so the producer's
      module cannot be imported. It finds the payload through the same
      environment variable (see ``LOAD``).
    * Both children run with ``-X faulthandler`` under ``python`` (the test's
      own interpreter by default; ``consumer_python`` overrides the
      consumer's); ``consumer_flags`` go before the script name (e.g.
      ``("-I", "-S")`` for a loader that sees only the standard library).

    Returns the consumer's stripped stdout. Raises AssertionError with both
    processes' stdout and stderr if either exits non-zero or the producer
    writes no payload.
    """
    tmp_path = Path(tmp_path)
    payload = tmp_path / "payload.bin"
    if payload.exists():
        payload.unlink()
    run_env = {**(env or {}), PAYLOAD_ENV: str(payload)}

    prod = run_script(
        tmp_path,
        producer,
        python=python,
        env=run_env,
        timeout=timeout,
        cwd=tmp_path / "producer",
        args=producer_args,
        name="script.py",
    )
    if prod.returncode != 0:
        raise AssertionError(_format_failure("producer", prod))
    if not payload.exists():
        raise AssertionError(
            _format_failure("producer", prod) + f"\nproducer wrote no payload to {payload}"
        )

    cons = run_script(
        tmp_path,
        consumer,
        python=consumer_python or python,
        env=run_env,
        timeout=timeout,
        cwd=tmp_path / "consumer",
        name="consume.py",
        flags=consumer_flags,
    )
    if cons.returncode != 0:
        raise AssertionError(_format_failure("consumer", cons, ("producer", prod)))
    return cons.stdout.strip()
