# pytest setup for the collection's unit tests: make `ansible_collections.hotreload.hotreload`
# importable from this checkout (the collections root is five directories up), so the tests
# run with plain `python3 -m pytest` and no installed collection.
import os
import sys

COLLECTIONS_ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), *[os.pardir] * 5))
if COLLECTIONS_ROOT not in sys.path:
    sys.path.insert(0, COLLECTIONS_ROOT)
