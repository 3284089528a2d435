"""The browser UI: server-rendered pages (``pages``), languages (``i18n``) and assets.

Pages are rendered from the same services the JSON API uses (the snapshot, jobs,
accounting, templates, dashboards), never by calling the API over HTTP. Scripts in
``static/js`` talk to the JSON API and the WebSocket for actions and live updates.
"""
