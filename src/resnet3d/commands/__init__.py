"""One module per ``resnet3d`` subcommand: ``add_arguments(parser)`` and ``run(args)``."""
