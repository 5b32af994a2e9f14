"""`python -m hrpose` (used by torchrun: `torchrun ... -m hrpose train pose`)."""

import sys

from hrpose.cli import main

sys.exit(main())
