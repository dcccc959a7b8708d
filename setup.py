"""
The one part of the build setup.cfg cannot say: the optional C extension.

Without a C compiler the build goes on without it, and txthrift uses the same
loop in Python (slower for containers of many small elements, nothing else).
"""

from setuptools import Extension, setup

setup(ext_modules=[Extension("txthrift._speedups", ["txthrift/_speedups.c"], optional=True)])
