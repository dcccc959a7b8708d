"""
C{python -m txthrift}: the C{txthrift} command line (call a service's
method, describe a service), as the console script runs it.
"""

from ._cli import main

if __name__ == "__main__":
    main()
