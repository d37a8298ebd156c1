import sys

from mulinterp.cli import main

sys.exit(main())
