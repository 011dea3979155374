"""refusalscope: measure how robustly chat models refuse harmful requests.

The core library is free of CLI dependencies; heavy libraries (torch, transformers)
are imported inside the functions that need them so that `refusalscope --help` stays fast.
"""

__version__ = "0.1.0"
