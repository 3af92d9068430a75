"""`python -m whisper_eas ...` is the `whisper-eas` command."""

import sys

from .apps.cli import main

sys.exit(main())
