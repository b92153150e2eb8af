"""`python -m data_tools` (and the `ali-data` console script)."""
import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
