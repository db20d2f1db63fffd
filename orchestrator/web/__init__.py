"""The web app at ``/``: server-rendered page shells whose scripts call the ``/v1`` API.

Every page's data comes from the public API with the session cookie and its CSRF token, so
the browser can do nothing a client of the API cannot; the pages only decide what to show.
"""
