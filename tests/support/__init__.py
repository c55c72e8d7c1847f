"""Helpers shared by more than one test suite (imported as `support.<module>`).

pytest puts `tests/` on sys.path when it loads the root conftest (the default `prepend`
import mode, and `tests/` has no `__init__.py`), so any test can import these.
"""
