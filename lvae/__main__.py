import sys

from lvae.cli import main

sys.exit(main())
