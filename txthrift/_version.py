"""
The version of txthrift, in the one place setup.cfg and the package read it.
"""

__version__ = "0.1.0.dev0"
