"""The status page at /ui: the fleet, what falls due, budgets, events and savings.

Server-rendered HTML with no outside assets under a strict Content-Security-Policy,
behind the read-only token: `session.py` (the login cookie), `view.py` (what the page
reads), `page.py` (the HTML, pure), `routes.py` (the handlers).
"""
