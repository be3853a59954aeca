"""Which names are dangerous: one table for the pickle level and shipped code.

A name is a dotted path, ``module.attr.attr``, after canonicalisation
(``posix.system`` and ``nt.system`` are ``os.system``; ``__builtin__`` and
``_operator`` are ``builtins`` and ``operator``). The tables name what runs
commands, evaluates or imports code, deserialises more payloads, opens the
network, or destroys files. They are deliberately about *capabilities*, not
modules: ``os.path.join`` is harmless, ``os.system`` is not.
"""

from __future__ import annotations

DANGER = "danger"
WARNING = "warning"

# Implementation modules that stand for a public one.
_ALIASES = {
    "posix": "os", "nt": "os", "__builtin__": "builtins", "exceptions": "builtins",
    "_operator": "operator", "_pickle": "pickle", "_socket": "socket", "_ctypes": "ctypes",
    "_io": "io", "_functools": "functools", "copy_reg": "copyreg", "_codecs": "codecs",
    "_collections": "collections", "_marshal": "marshal", "_imp": "imp",
    "posixpath": "os.path", "ntpath": "os.path", "_thread": "threading",
}

# Every attribute of these modules is dangerous: their whole purpose is one
# of the capabilities above.
_ANY_ATTR = {
    "subprocess": "runs commands",
    "_posixsubprocess": "runs commands",
    "pty": "runs commands in a pseudo-terminal",
    "commands": "runs commands",
    "popen2": "runs commands",
    "asyncio.subprocess": "runs commands",
    "ctypes": "calls native code",
    "cffi": "calls native code",
    "socket": "opens network connections",
    "socketserver": "opens network connections",
    "http.client": "opens network connections",
    "urllib.request": "opens network connections",
    "ftplib": "opens network connections",
    "smtplib": "opens network connections",
    "telnetlib": "opens network connections",
    "xmlrpc.client": "opens network connections",
    "webbrowser": "starts programs",
    "runpy": "runs code",
    "code": "runs code interactively",
    "codeop": "compiles code",
    "pdb": "starts a debugger",
    "bdb": "starts a debugger",
    "imp": "imports code",
    "zipimport": "imports code",
    "importlib.util": "imports code",
    "importlib.machinery": "imports code",
    "multiprocessing.popen_fork": "starts processes",
    "multiprocessing.popen_spawn_posix": "starts processes",
    "distutils.spawn": "runs commands",
}

_OS_EXEC = {"system", "popen", "startfile", "fork", "forkpty", "posix_spawn", "posix_spawnp"}
_OS_EXEC |= {f"exec{s}" for s in ("l", "le", "lp", "lpe", "v", "ve", "vp", "vpe")}
_OS_EXEC |= {f"spawn{s}" for s in ("l", "le", "lp", "lpe", "v", "ve", "vp", "vpe")}
_OS_DESTROY = {"remove", "unlink", "rmdir", "removedirs", "rename", "renames", "replace",
               "truncate", "ftruncate", "chmod", "fchmod", "lchmod", "chown", "fchown",
               "lchown", "link", "symlink", "mkfifo", "mknod", "chroot", "kill", "killpg",
               "putenv", "unsetenv", "setuid", "setgid", "seteuid", "setegid", "setreuid",
               "setregid", "setresuid", "setresgid", "_exit", "abort", "write", "pwrite",
               "writev", "dup2", "execve", "open", "openpty", "fchdir", "chdir"}

# module -> {attribute: reason}
_ATTRS: dict[str, dict[str, str]] = {
    "os": {**dict.fromkeys(_OS_EXEC, "runs commands"),
           **dict.fromkeys(_OS_DESTROY, "changes files, processes or the environment")},
    "builtins": {"eval": "evaluates code", "exec": "executes code", "compile": "compiles code",
                 "__import__": "imports modules by name", "breakpoint": "starts a debugger",
                 "input": "reads the terminal", "exit": "stops the interpreter",
                 "quit": "stops the interpreter"},
    "importlib": {"import_module": "imports modules by name", "__import__":
                  "imports modules by name", "reload": "re-runs module code"},
    "sys": {"modules": "reaches any imported module", "settrace": "hooks execution",
            "setprofile": "hooks execution", "_getframe": "reaches caller frames",
            "exit": "stops the interpreter", "addaudithook": "hooks execution",
            "breakpointhook": "starts a debugger"},
    "marshal": {"loads": "loads code objects", "load": "loads code objects"},
    "pickle": {"loads": "loads another pickle", "load": "loads another pickle",
               "Unpickler": "loads another pickle", "_loads": "loads another pickle",
               "_load": "loads another pickle", "_Unpickler": "loads another pickle"},
    "cloudpickle": {"loads": "loads another pickle", "load": "loads another pickle"},
    "dill": {"loads": "loads another pickle", "load": "loads another pickle"},
    "dill._dill": {"_eval_repr": "evaluates code", "loads": "loads another pickle",
                   "load": "loads another pickle",
                   "_create_filehandle": "opens files"},
    "marinade": {"loads": "loads another pickle", "load": "loads another pickle"},
    "shelve": {"open": "loads pickles from a file"},
    "shutil": {"rmtree": "deletes files", "move": "moves files", "chown": "changes files",
               "copyfile": "writes files", "copy": "writes files", "copy2": "writes files",
               "copytree": "writes files", "unpack_archive": "writes files",
               "make_archive": "writes files"},
    "timeit": {"timeit": "executes code strings", "repeat": "executes code strings",
               "Timer": "executes code strings"},
    "platform": {"popen": "runs commands"},
    "pydoc": {"pipepager": "runs commands", "tempfilepager": "runs commands",
              "pager": "runs commands", "getpager": "runs commands",
              "locate": "imports modules by name"},
    "types": {"CodeType": "builds code objects"},
    "ctypes.util": {"find_library": "runs commands"},
    "asyncio": {"create_subprocess_exec": "runs commands",
                "create_subprocess_shell": "runs commands"},
    "io": {"open": "opens files", "FileIO": "opens files", "open_code": "opens files"},
    # Standard-library functions that run a command or code under another name.
    "imaplib": {"IMAP4_stream": "runs commands"},
    "cProfile": {"run": "executes code strings", "runctx": "executes code strings"},
    "profile": {"run": "executes code strings", "runctx": "executes code strings"},
    "uuid": {"_get_command_stdout": "runs commands"},
    "multiprocessing.util": {"spawnv_passfds": "runs commands"},
    "pkgutil": {"resolve_name": "imports modules by name"},
    "gc": {"get_objects": "reaches every object", "get_referrers": "reaches every object",
           "get_referents": "reaches every object"},
}
# Opening files is normal for shipped code (reading data); at load time it is not.
_LOAD_ONLY = {("builtins", "open"): "opens files", ("io", "open"): "opens files"}
# Dangerous in shipped code, but at load time the inspector judges their use
# itself: marinade imports the modules shipped functions use with
# ``import_module("math")``, and code objects travel through ``marshal.loads``
# (standalone) or ``CodeType`` (cloudpickle, dill), their bytecode analysed.
_CODE_ONLY = {("importlib", "import_module"), ("types", "CodeType"), ("marshal", "loads"),
              ("dill._dill", "_eval_repr")}

# Names used inside shipped code that deserve a mention but not the verdict.
_CODE_WARN = {
    ("builtins", "open"): "opens files",
    ("builtins", "globals"): "reads the global namespace",
    ("builtins", "vars"): "reads namespaces",
    ("builtins", "locals"): "reads the local namespace",
    ("builtins", "getattr"): "fetches attributes by name",
    ("builtins", "setattr"): "sets attributes by name",
    ("builtins", "delattr"): "deletes attributes by name",
    ("operator", "attrgetter"): "fetches attributes by name",
    ("operator", "methodcaller"): "calls methods by name",
    ("types", "FunctionType"): "builds functions from code",
    ("types", "LambdaType"): "builds functions from code",
}

# Attributes whose mere fetch, on any object, is a sandbox-escape or
# command-execution step: ``x.__globals__``, ``x.system`` on an object
# inspection could not name.
DANGER_ATTRS = {
    "__globals__": "reaches a function's globals",
    "__builtins__": "reaches the builtins",
    "__subclasses__": "walks the class hierarchy",
    "__import__": "imports modules by name",
    "f_globals": "reaches a frame's globals",
    "f_builtins": "reaches a frame's builtins",
    "f_back": "reaches caller frames",
    "gi_frame": "reaches a generator's frame",
    "cr_frame": "reaches a coroutine's frame",
    "tb_frame": "reaches a traceback's frame",
    "system": "runs commands",
    "popen": "runs commands",
    "Popen": "runs commands",
    "check_output": "runs commands",
    "check_call": "runs commands",
    "getoutput": "runs commands",
    "getstatusoutput": "runs commands",
    "posix_spawn": "runs commands",
    "posix_spawnp": "runs commands",
    "create_subprocess_shell": "runs commands",
    "create_subprocess_exec": "runs commands",
    "rmtree": "deletes files",
}
DANGER_ATTRS.update(dict.fromkeys((f"exec{s}" for s in ("l", "le", "lp", "lpe", "v", "ve",
                                                         "vp", "vpe")), "runs commands"))
DANGER_ATTRS.update(dict.fromkeys((f"spawn{s}" for s in ("l", "le", "lp", "lpe", "v", "ve",
                                                          "vp", "vpe")), "runs commands"))

# Setting these makes a later, innocent-looking step call anything
# (BUILD calls ``__setstate__``; a replaced ``__code__`` swaps a function's code).
DANGER_SET_ATTRS = {
    "__setstate__", "__reduce__", "__reduce_ex__", "__getattr__", "__getattribute__",
    "__setattr__", "__class__", "__code__", "__globals__", "__builtins__", "__call__",
    "__init__", "__new__", "__getstate__", "__set_name__", "__init_subclass__",
    "__class_getitem__", "__eq__", "__hash__", "__del__",
}

# Modules that, passed around as values in shipped code (``getattr(os, name)``),
# give access to the capabilities above.
DANGER_MODULE_VALUES = {"os", "subprocess", "builtins", "importlib", "sys", "ctypes", "pty",
                        "socket", "shutil", "marshal", "pickle", "runpy", "posix", "nt"}


def canonical(dotted: str) -> str:
    """``posix.system`` -> ``os.system``: one spelling per capability."""
    module, dot, rest = dotted.partition(".")
    alias = _ALIASES.get(module)
    if alias is None:
        # Submodule aliases (``os.path`` spelled ``posixpath``) need the full prefix.
        return dotted
    return alias + dot + rest if rest else alias


def _split(dotted: str) -> tuple[str, str]:
    """(module, attribute) for the longest module prefix the tables know."""
    parts = dotted.split(".")
    for cut in range(len(parts) - 1, 0, -1):
        module = ".".join(parts[:cut])
        if module in _ATTRS or module in _ANY_ATTR:
            return module, parts[cut]
    return ".".join(parts[:-1]), parts[-1]


def _any_attr_reason(dotted: str) -> str | None:
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        reason = _ANY_ATTR.get(".".join(parts[:cut]))
        if reason is not None:
            return reason
    return None


def danger(dotted: str, *, at_load: bool) -> str | None:
    """Why the global or name ``dotted`` is dangerous, or None.

    ``at_load``: named by the pickle itself (imported or called while
    loading) rather than used by shipped code when it later runs.
    """
    dotted = canonical(dotted)
    reason = _any_attr_reason(dotted)
    if reason is not None:
        return reason
    if "." not in dotted:
        return None
    module, attr = _split(dotted)
    if at_load and (module, attr) in _CODE_ONLY:
        return None
    reason = _ATTRS.get(module, {}).get(attr)
    if reason is not None:
        return reason
    if at_load:
        return _LOAD_ONLY.get((module, attr))
    return None


def code_warning(dotted: str) -> str | None:
    """Why a name used by shipped code deserves a mention (not a verdict)."""
    dotted = canonical(dotted)
    if "." not in dotted:
        return None
    module, attr = _split(dotted)
    return _CODE_WARN.get((module, attr))


def chain_danger(qualname: str) -> str | None:
    """Why a dotted qualified name in a global is an attack, or None.

    ``STACK_GLOBAL('collections', 'OrderedDict.__init__.__globals__')`` walks
    attributes to reach anything. Legitimate qualified names (methods, nested
    classes) pass through no ``__dunder__`` and end in no escape attribute.
    """
    parts = qualname.split(".")
    for part in parts[:-1]:
        if part.startswith("__") and part.endswith("__") and len(part) > 4:
            return f"walks attributes through {part}"
    if len(parts) > 1 and parts[-1] in DANGER_ATTRS:
        return DANGER_ATTRS[parts[-1]]
    return None
