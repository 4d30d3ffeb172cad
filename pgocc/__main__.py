import sys

from pgocc.cli import main

sys.exit(main())
