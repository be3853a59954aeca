"""Process-wide registry of classes that travel by value.

Kept in its own tiny module so that payloads loaded without marinade installed
(standalone mode ships the reconstructors inside the payload) find the same
registry under the same ``sys.modules`` name as payloads loaded with it.
``_rebuild._registry`` creates an equivalent module when this one is absent,
so this module holds data only: code that uses it must not rely on anything
but these attributes.
"""

import threading
import weakref

# deterministic class key -> class object (the live one wins)
classes = weakref.WeakValueDictionary()
# class object -> its key (sent from here, or rebuilt here from a payload)
keys = weakref.WeakKeyDictionary()
# every class in ``classes``: sent from here, or rebuilt here
by_value = weakref.WeakSet()
# classes created by a load whose state has not been applied yet (a plain set:
# set_class_state, right after, takes each out; a load that failed in between
# leaves its class here, kept for the next load of that class to complete)
fresh = set()
# base key -> how many class objects sent from here were given it (keys
# are never reused for another class object: see classes.claim_key)
issued = {}
lock = threading.RLock()
