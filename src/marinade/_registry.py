"""Process-wide registry of classes that travel by value.

Kept in its own tiny module so that payloads loaded without marinade installed
(standalone mode ships the reconstructors inside the payload) find the same
registry under the same ``sys.modules`` name as payloads loaded with it.
"""

import threading
import weakref

# deterministic class key -> class object (the live one wins)
classes = weakref.WeakValueDictionary()
# every class in ``classes``: sent from here, or rebuilt here
by_value = weakref.WeakSet()
# classes created by a load whose state has not been applied yet
fresh = weakref.WeakSet()
lock = threading.RLock()


def remember(key, cls):
    """Record a class sent by value, so that loading it here gives it back."""
    with lock:
        live = classes.setdefault(key, cls)
        by_value.add(live)
        return live
