"""``python -m app.serve run app/main.py ...``: Streamlit's own command line, minus its network lookup.

Streamlit asks checkip.amazonaws.com for this machine's public address when it binds every
interface (to print an "External URL") and whenever a request comes from an origin it does not
know (to see if that is the public address). The workbench makes no network request, so the lookup
is switched off here, before the server starts; everything else is ``streamlit`` unchanged.
"""

from __future__ import annotations

import sys


def no_external_ip_lookup() -> None:
    """Make Streamlit's public-address lookup answer "unknown" without asking the network."""
    import streamlit.net_util as net_util

    net_util.get_external_ip = lambda: None  # looked up on the module at each call by bootstrap and server_util


def main() -> None:
    no_external_ip_lookup()
    from streamlit.web.cli import main as streamlit_main

    sys.exit(streamlit_main(prog_name="streamlit"))


if __name__ == "__main__":
    main()
