"""``python -m llmos.transport``: run a node (the same as ``llmos node``)."""

import sys

from llmos.transport._cli import node_main

sys.exit(node_main())
