"""One module per ``rankscope`` sub-command (``HELP``, ``add_arguments``, ``run``)."""
