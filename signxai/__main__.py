"""``python -m signxai``: the command line (:mod:`signxai.cli`)."""
import sys

from signxai.cli import main

sys.exit(main())
