import sys

from tutorial_lib.cli import main

sys.exit(main())
