"""``/terminal``: a login shell in the browser (xterm.js, ``static/js/terminal.js``).

The page only draws the terminal; the script starts or reattaches the shell through
the terminal API (``api/terminal.py``). ``?cwd=/some/folder`` (the file manager's
"Open in terminal") asks for a new shell in that folder; whether the person may enter
it is decided as them when the shell starts. While ``terminal_enabled`` is off the
page answers 403 and says so.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.responses import HTMLResponse

from hpcportal.web.common import PageDep
from hpcportal.web.i18n import N_

router = APIRouter(include_in_schema=False)

#: The page's answer while the terminal is off (``services.terminal.SWITCHED_OFF``).
SWITCHED_OFF = N_("The terminal is switched off on this portal by its administrators.")

#: What the script shows, in the page's language (``data-messages`` on the terminal).
MESSAGES = {
    "connecting": N_("Connecting to your shell…"),
    "connected": N_("Connected."),
    "reconnecting": N_("Connection lost; reconnecting…"),
    "reopened": N_("Your earlier shell had ended; this is a new one."),
    "exit": N_("The shell has ended."),
    "idle": N_("The terminal was closed after a long time without input."),
    "detached": N_("The terminal was closed because nobody reattached in time."),
    "closed": N_("The terminal was closed."),
    "stopping": N_("The portal is restarting; open a new terminal."),
    "taken": N_("This terminal is now open in another window."),
    "expired": N_("Your login has expired; reload the page to log in again."),
    "logged_out": N_("You have logged out."),
    "failed": N_("The shell could not be started."),
    "copied": N_("Copied."),
    "nothing_selected": N_("Select text in the terminal first."),
    "no_clipboard": N_("The browser does not let this page use the clipboard."),
}


@router.get("/terminal", response_class=HTMLResponse)
async def terminal_page(
    page: PageDep, cwd: Annotated[str | None, Query(max_length=4096)] = None
) -> HTMLResponse:
    """The terminal page; with ``cwd`` a new shell starts in that folder."""
    if not page.settings.terminal_enabled:
        return page.render(
            "terminal.html", status=403, page_key="terminal", disabled=page.gettext(SWITCHED_OFF)
        )
    messages = {key: page.gettext(text) for key, text in MESSAGES.items()}
    return page.render(
        "terminal.html", page_key="terminal", disabled=None, cwd=cwd or "", messages=messages
    )
