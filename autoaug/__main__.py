import sys

from autoaug.cli import main

sys.exit(main())
