import sys

from resnet3d.cli import main

sys.exit(main())
