# llmos.actors: the actor core. Imports nothing else of llmos.
from llmos.actors._errors import *  # noqa: F403
from llmos.actors._errors import __all__ as _errors_all

__all__ = [*_errors_all]
