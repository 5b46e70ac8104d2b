"""The status page's HTML: a `StatusView` in, a document out. Pure: no I/O, no clock.

No outside assets: the style and the one small script (it keeps countdowns ticking,
against the server's clock) are inline, and the Content-Security-Policy names each by
its SHA-256, so nothing else can run or style the page. Charts and bars are inline
SVG (its attributes are not styles, which the policy would refuse). Every value from
outside is escaped.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Sequence
from datetime import datetime, timedelta
from decimal import Decimal
from html import escape
from typing import Final

from warden.budget.evaluate import Standing
from warden.budget.freshness import lag_text
from warden.policy.durations import format_duration
from warden.ui.view import SavingsDay, StatusView

CENT = Decimal("0.01")
STALE_LAG = timedelta(hours=1)  # a budget figure older than this is marked as old
SEVERITIES = ("info", "warning", "critical")

STYLE: Final = """
:root{--ink:#1d2433;--muted:#5b6475;--line:#e3e6ec;--card:#fff;--bg:#f4f6f9;
--ok:#1f9d55;--warn:#d98b00;--bad:#d64545;--accent:#3557d4;--soft:#eef2ff}
*{box-sizing:border-box}
body{margin:0;font:15px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;
color:var(--ink);background:var(--bg)}
header{display:flex;flex-wrap:wrap;gap:.5rem 1rem;align-items:center;
justify-content:space-between;padding:.8rem 1.2rem;background:#18203a;color:#fff}
header h1{margin:0;font-size:1.2rem;letter-spacing:.02em}
header .meta{color:#c5cbe0;font-size:.85rem}
header form{margin:0}
header button{background:transparent;color:#fff;border:1px solid #6d7799;border-radius:6px;
padding:.3rem .7rem;font:inherit;font-size:.85rem;cursor:pointer}
.badge{display:inline-block;padding:.05rem .45rem;border-radius:999px;font-size:.75rem;
font-weight:600;background:var(--soft);color:var(--accent);vertical-align:middle}
.badge.dry{background:#fff3d6;color:#8a5a00}
main{max-width:1280px;margin:0 auto;padding:1rem;display:grid;gap:1rem;
grid-template-columns:repeat(auto-fit,minmax(min(100%,34rem),1fr))}
.tiles{grid-column:1/-1;display:grid;gap:1rem;
grid-template-columns:repeat(auto-fit,minmax(min(100%,13rem),1fr))}
.tile,section{background:var(--card);border:1px solid var(--line);border-radius:10px;
padding:.9rem 1rem}
.tile .n{font-size:1.6rem;font-weight:700;display:block}
.tile .l{color:var(--muted);font-size:.82rem}
section h2{margin:0 0 .6rem;font-size:1rem}
section h2 small{color:var(--muted);font-weight:400}
table{width:100%;border-collapse:collapse;font-size:.9rem}
th,td{text-align:left;padding:.35rem .4rem;border-bottom:1px solid var(--line)}
th{color:var(--muted);font-weight:600;font-size:.8rem}
td.num,th.num{text-align:right;font-variant-numeric:tabular-nums}
.scroll{overflow-x:auto}
.dot{display:inline-block;width:.6rem;height:.6rem;border-radius:50%;background:var(--ok);
margin-right:.3rem}
.dot.down,.dot.critical{background:var(--bad)}.dot.warning{background:var(--warn)}
.dot.info{background:#9aa6bf}
ul.items{list-style:none;margin:0;padding:0}
ul.items li{display:grid;grid-template-columns:6.8rem 1fr;gap:.2rem .8rem;
padding:.55rem 0;border-bottom:1px solid var(--line)}
ul.items li:last-child{border-bottom:0}
.when{font-weight:700;font-variant-numeric:tabular-nums;color:var(--accent)}
.when.late{color:var(--bad)}
.what{font-weight:600;overflow-wrap:anywhere}
.why{grid-column:2;color:var(--muted);font-size:.85rem;overflow-wrap:anywhere}
.why b{color:var(--ink);font-weight:600}
.budget{padding:.5rem 0;border-bottom:1px solid var(--line)}
.budget:last-child{border-bottom:0}
.budget .head{display:flex;justify-content:space-between;gap:.5rem;flex-wrap:wrap}
.budget svg{display:block;width:100%;height:14px;margin:.35rem 0}
.budget .fig{font-size:.85rem;color:var(--muted)}
.fresh{font-size:.8rem;color:var(--muted)}
.fresh.old{color:var(--bad);font-weight:600}
.chart svg{width:100%;height:auto;display:block}
.empty{color:var(--muted);font-style:italic}
.sev{font-size:.75rem;color:var(--muted)}
footer{max-width:1280px;margin:0 auto;padding:0 1rem 1.5rem;color:var(--muted);
font-size:.8rem}
.login{max-width:24rem;margin:12vh auto;background:var(--card);border:1px solid var(--line);
border-radius:10px;padding:1.5rem}
.login h1{margin:0 0 .4rem;font-size:1.3rem}
.login label{display:block;margin:.8rem 0 .3rem;font-weight:600}
.login input{width:100%;padding:.55rem;font:inherit;border:1px solid #b8c0d0;border-radius:6px}
.login button{margin-top:1rem;width:100%;padding:.6rem;font:inherit;font-weight:600;
background:var(--accent);color:#fff;border:0;border-radius:6px;cursor:pointer}
.login .error{color:var(--bad);margin:.6rem 0 0}
@media (max-width:600px){body{font-size:14px}main{padding:.6rem;gap:.6rem}
.tiles{grid-template-columns:1fr 1fr;gap:.6rem}.tile{padding:.6rem .7rem}
ul.items li{grid-template-columns:1fr}.why{grid-column:1}
.tile .n{font-size:1.15rem}header{padding:.6rem .8rem}.wide{display:none}
th,td{padding:.3rem .25rem}}
.legend{color:var(--muted);font-size:.78rem;margin:-.3rem 0 .4rem}
"""

SCRIPT: Final = (
    "(function(){var b=document.body,o=Date.parse(b.dataset.now)-Date.now();"
    "function f(s){var a=Math.abs(s),h=Math.floor(a/3600),m=Math.floor(a%3600/60),"
    "x=Math.floor(a%60),t=h?h+'h'+(m<10?'0':'')+m+'m':m?m+'m'+(x<10?'0':'')+x+'s':x+'s';"
    "return s<0?t+' ago':'in '+t}"
    "function tick(){var n=Date.now()+o;document.querySelectorAll('[data-at]').forEach("
    "function(e){e.textContent=f((Date.parse(e.dataset.at)-n)/1000)})}"
    "tick();setInterval(tick,1000)})();"
)


def _sha256(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode() + "'"


CONTENT_SECURITY_POLICY: Final = (
    f"default-src 'none'; style-src {_sha256(STYLE)}; script-src {_sha256(SCRIPT)}; "
    "img-src 'none'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)


# ---------------------------------------------------------------- pieces


def countdown(at: datetime, now: datetime) -> str:
    """ "in 1h05m", "in 4m30s", "12m ago": what the script also writes, each second."""
    seconds = int((at - now).total_seconds())
    left = abs(seconds)
    hours, rest = divmod(left, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        text = f"{hours}h{minutes:02d}m"
    elif minutes:
        text = f"{minutes}m{secs:02d}s"
    else:
        text = f"{secs}s"
    return f"{text} ago" if seconds < 0 else f"in {text}"


def _ago(moment: datetime | None, now: datetime) -> str:
    if moment is None:
        return "never"
    return f"{format_duration(max(now - moment, timedelta(0)))} ago"


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" + ("" if n == 1 else "s")


def _usd(amount: Decimal) -> str:
    return f"${amount.quantize(CENT):,}"


def _clock(moment: datetime) -> str:
    return f"{moment:%Y-%m-%d %H:%M} UTC"


def _document(title: str, body: str, *, now: datetime | None = None) -> str:
    now_attr = f" data-now='{now.isoformat()}'" if now is not None else ""
    script = f"<script>{SCRIPT}</script>" if now is not None else ""
    return (
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>"
        "<meta name='viewport' content='width=device-width,initial-scale=1'>"
        "<meta name='referrer' content='same-origin'>"
        f"<title>{escape(title)}</title><style>{STYLE}</style></head>"
        f"<body{now_attr}>{body}{script}</body></html>"
    )


# ---------------------------------------------------------------- the login form


def login_page(*, error: str | None = None, available: bool = True) -> str:
    """The form that trades a token for a session cookie."""
    if not available:
        form = (
            "<p class='error'>No token is set: start Warden with WARDEN_READONLY_TOKEN (or "
            "WARDEN_ADMIN_TOKEN) to open this page.</p>"
        )
    else:
        problem = f"<p class='error' id='login-error'>{escape(error)}</p>" if error else ""
        form = (
            "<form method='post' action='/ui/login'>"
            "<label for='token'>Read-only token</label>"
            "<input id='token' name='token' type='password' autocomplete='current-password' "
            "required autofocus>"
            f"<button type='submit'>Open the status page</button>{problem}</form>"
        )
    body = (
        "<div class='login'><h1>Warden</h1><p>The status page needs the read-only token "
        f"(WARDEN_READONLY_TOKEN); the session lasts 12 hours.</p>{form}</div>"
    )
    return _document("Warden — log in", body)


# ---------------------------------------------------------------- the status page


def status_page(view: StatusView) -> str:
    now = view.now
    badges = "<span class='badge dry'>dry run</span>" if view.dry_run else ""
    header = (
        f"<header><div><h1>Warden {badges}</h1><div class='meta'>status at "
        f"<time datetime='{now.isoformat()}'>{_clock(now)}</time> · {escape(view.role)} view"
        "</div></div><form method='post' action='/ui/logout'>"
        "<button type='submit'>Log out</button></form></header>"
    )
    sections = [
        _tiles(view),
        _due(view),
        _budgets(view),
        _fleet(view),
        _savings(view),
        _kept_alive(view),
        _events(view),
    ]
    footer = (
        "<footer>Read-only: nothing on this page acts. Figures are as the store holds "
        "them; budgets show how old their facts are. Avoided spend counts each stop "
        f"Warden made for at most {format_duration(view.horizon)} "
        "(settings.savings_horizon).</footer>"
    )
    return _document(
        "Warden — status", header + "<main>" + "".join(sections) + "</main>" + footer, now=now
    )


def _tiles(view: StatusView) -> str:
    running = sum(line.counts.get("running", 0) for line in view.fleet)
    total = sum(line.total for line in view.fleet)
    soonest = view.due[0] if view.due else None
    due = (
        f"<span class='n' data-at='{soonest.at.isoformat()}'>{countdown(soonest.at, view.now)}</span>"
        f"<span class='l'>next: {escape(soonest.action)} {escape(soonest.subject)}</span>"
        if soonest
        else "<span class='n'>—</span><span class='l'>nothing due in 24h</span>"
    )
    hot = sum(1 for s in view.budgets if s.percent >= 80)
    tiles = [
        f"<div class='tile' id='tile-running'><span class='n'>{running} / {total}</span>"
        "<span class='l'>workspaces running</span></div>",
        f"<div class='tile' id='tile-due'>{due}</div>",
        f"<div class='tile' id='tile-avoided'><span class='n'>{_usd(view.savings_total)}</span>"
        "<span class='l'>avoided in 30 days</span></div>",
        f"<div class='tile' id='tile-budgets'><span class='n'>{hot}</span>"
        "<span class='l'>budget scopes at 80% or more</span></div>",
    ]
    return "<div class='tiles'>" + "".join(tiles) + "</div>"


def _due(view: StatusView) -> str:
    if not view.due:
        items = "<p class='empty'>Nothing falls due in the next 24 hours.</p>"
    else:
        rows = []
        for d in view.due:
            late = " late" if d.at <= view.now else ""
            owner = f" · {escape(d.owner)}" if d.owner else ""
            rows.append(
                f"<li data-kind='{escape(d.kind)}' data-policy='{escape(d.policy)}'>"
                f"<span class='when{late}' data-at='{d.at.isoformat()}'>"
                f"{countdown(d.at, view.now)}</span>"
                f"<span class='what'>{escape(d.action)} {escape(d.subject)}{owner}</span>"
                f"<span class='why'><b>{escape(d.policy)}</b>: {escape(d.rule)}</span>"
                f"<span class='why'>{escape(d.fact)} · at {_clock(d.at)}</span></li>"
            )
        items = "<ul class='items'>" + "".join(rows) + "</ul>"
    return f"<section id='due'><h2>Due next <small>and why</small></h2>{items}</section>"


def _budget_bar(standing: Standing, now: datetime) -> str:
    percent = float(standing.percent)
    projected = float(standing.projected(now) * 100 / standing.limit)
    colour = "#d64545" if percent >= 100 else "#d98b00" if percent >= 80 else "#1f9d55"
    ticks = "".join(
        f"<line x1='{min(float(t.at), 100)}' x2='{min(float(t.at), 100)}' y1='0' y2='10' "
        "stroke='#18203a' stroke-width='0.4'/>"
        for t in standing.budget.thresholds
    )
    return (
        "<svg viewBox='0 0 100 10' preserveAspectRatio='none' role='img' "
        f"aria-label='{percent:.1f}% spent, {projected:.1f}% projected'>"
        "<rect x='0' y='0' width='100' height='10' rx='2' fill='#e8ebf2'/>"
        f"<rect class='bar-spent' x='0' y='0' width='{min(percent, 100):.2f}' height='10' rx='2' "
        f"fill='{colour}'/>"
        f"<rect class='bar-projected' x='{min(projected, 100) - 0.4:.2f}' y='0' width='0.8' "
        "height='10' fill='#3557d4'/>"
        f"{ticks}</svg>"
    )


def _budgets(view: StatusView) -> str:
    if not view.budgets:
        return "<section id='budgets'><h2>Budgets</h2><p class='empty'>No budget has spend in its window yet.</p></section>"
    parts = []
    for s in view.budgets:
        fresh = s.freshness
        lag = fresh.lag(view.now)
        old = " old" if lag is None or lag > STALE_LAG else ""
        oldest = fresh.oldest
        age = (
            f"data as of {_clock(fresh.as_of)} ({lag_text(int(lag.total_seconds()))} old"
            f"{', oldest: ' + escape(oldest.name) if oldest else ''})"
            if fresh.as_of is not None and lag is not None
            else "data age unknown: a source has not been read yet"
        )
        fired = s.state.fired if s.state else ()
        crossed = ", ".join(f"{s.budget.thresholds[i].at}%" for i in fired) or "none"
        parts.append(
            f"<div class='budget' data-budget='{escape(s.budget.name)}' data-scope='{escape(s.scope)}'>"
            f"<div class='head'><span class='what'>{escape(s.budget.name)} · {escape(s.scope)}</span>"
            f"<span class='fig'><b class='spent'>{_usd(s.spent)}</b> of {_usd(s.limit)} "
            f"({s.percent.quantize(Decimal('0.1'))}%)</span></div>"
            f"{_budget_bar(s, view.now)}"
            f"<div class='fig'>projected {_usd(s.projected(view.now))} by {_clock(s.window.end)}"
            f" · burning {_usd(s.burn_per_hour)}/h · fired: {crossed}</div>"
            f"<div class='fresh{old}'>{age}</div></div>"
        )
    legend = (
        "<p class='legend'>bar: spent this window · blue mark: projected at its end · "
        "dark ticks: thresholds</p>"
    )
    return (
        "<section id='budgets'><h2>Budgets <small>spend, forecast and data age</small></h2>"
        + legend
        + "".join(parts)
        + "</section>"
    )


def _fleet(view: StatusView) -> str:
    rows = []
    for line in view.fleet:
        other = line.total - line.counts.get("running", 0) - line.counts.get("stopped", 0)
        dot = "dot" if line.reachable else "dot down"
        rows.append(
            f"<tr data-provider='{escape(line.provider)}'><td><span class='{dot}'></span>"
            f"{escape(line.provider)}</td><td class='wide'>{escape(line.kind)}</td>"
            f"<td class='num running'>{line.counts.get('running', 0)}</td>"
            f"<td class='num stopped'>{line.counts.get('stopped', 0)}</td>"
            f"<td class='num other'>{other}</td>"
            f"<td>{_ago(line.last_poll, view.now)}</td></tr>"
        )
    table = (
        "<div class='scroll'><table><thead><tr><th>provider</th><th class='wide'>type</th>"
        "<th class='num'>running</th><th class='num'>stopped</th><th class='num'>other</th>"
        "<th>last poll</th></tr></thead><tbody>" + "".join(rows) + "</tbody></table></div>"
    )
    return (
        f"<section id='fleet'><h2>Fleet <small>by provider and state</small></h2>{table}</section>"
    )


def _savings(view: StatusView) -> str:
    return (
        "<section id='savings' class='chart'><h2>Avoided spend <small>per UTC day, last 30 days"
        f"</small></h2><p><b class='total'>{_usd(view.savings_total)}</b> avoided by "
        f"{_count(sum(d.stops for d in view.savings), 'stop')} Warden made</p>"
        f"{savings_chart(view.savings)}</section>"
    )


def savings_chart(days: Sequence[SavingsDay]) -> str:
    """Bars per day, with the highest day's amount on the axis; each bar has a title."""
    width, height, left, bottom = 600, 180, 48, 22
    plot_w, plot_h = width - left - 8, height - bottom - 10
    top = max([d.avoided for d in days] + [Decimal(0)])
    scale = _nice(top)
    slot = plot_w / max(len(days), 1)
    bars, labels = [], []
    for i, d in enumerate(days):
        avoided, day = d.avoided, d.day
        h = float(avoided / scale) * plot_h
        x = left + i * slot + slot * 0.15
        y = 10 + plot_h - h
        bars.append(
            f"<rect class='bar' x='{x:.1f}' y='{y:.1f}' width='{slot * 0.7:.1f}' "
            f"height='{h:.1f}' rx='1.5' fill='#3557d4' data-day='{day.isoformat()}' "
            f"data-avoided='{avoided.quantize(CENT)}'><title>{day.isoformat()}: "
            f"{_usd(avoided)} avoided ({d.hours} h, {d.stops} stops)"
            "</title></rect>"
        )
        if (len(days) - 1 - i) % 7 == 0:  # every week back from today
            labels.append(
                f"<text x='{x + slot * 0.35:.1f}' y='{height - 6}' text-anchor='middle' "
                f"font-size='10' fill='#5b6475'>{day:%m-%d}</text>"
            )
    grid = "".join(
        f"<line x1='{left}' x2='{width - 8}' y1='{10 + plot_h * (1 - f):.1f}' "
        f"y2='{10 + plot_h * (1 - f):.1f}' stroke='#e3e6ec'/>"
        f"<text x='{left - 6}' y='{14 + plot_h * (1 - f):.1f}' text-anchor='end' font-size='10' "
        f"fill='#5b6475'>{_usd(scale * Decimal(str(f)))}</text>"
        for f in (0.0, 0.5, 1.0)
    )
    return (
        f"<svg viewBox='0 0 {width} {height}' role='img' aria-label='avoided spend per day'>"
        f"{grid}{''.join(bars)}{''.join(labels)}</svg>"
    )


def _nice(top: Decimal) -> Decimal:
    """A round axis maximum at or above `top`: 1, 2 or 5 times a power of ten."""
    if top <= 0:
        return Decimal(1)
    magnitude = Decimal(10) ** (top.adjusted())
    for step in (1, 2, 5, 10):
        if top <= magnitude * step:
            return magnitude * step
    return magnitude * 10


def _kept_alive(view: StatusView) -> str:
    if not view.kept_alive:
        body = "<p class='empty'>No keep-alive is in force.</p>"
    else:
        rows = "".join(
            f"<li data-workspace='{escape(k.workspace)}'><span class='when' "
            f"data-at='{k.until.isoformat()}'>{countdown(k.until, view.now)}</span>"
            f"<span class='what'>{escape(k.name)} · {escape(k.owner)}</span>"
            "<span class='why'>in use until "
            f"{_clock(k.until)}; holds "
            + (
                ", ".join(
                    f"<b>{escape(p)}</b> until {u:%H:%M} UTC" for p, u in sorted(k.held.items())
                )
                or "no policy (none that respects keep-alives covers it)"
            )
            + "</span></li>"
            for k in view.kept_alive
        )
        body = f"<ul class='items'>{rows}</ul>"
    return f"<section id='kept-alive'><h2>Kept alive</h2>{body}</section>"


def _events(view: StatusView) -> str:
    if not view.events:
        body = "<p class='empty'>No events yet.</p>"
    else:
        rows = "".join(
            f"<li data-type='{escape(e.type)}'><span class='sev'><span class='dot {escape(e.severity)}'>"
            f"</span>{e.time:%H:%M:%S}</span><span class='what'>{escape(e.headline)}</span>"
            + (f"<span class='why'>{escape(e.reason)}</span>" if e.reason else "")
            + "</li>"
            for e in view.events
        )
        body = f"<ul class='items'>{rows}</ul>"
    return (
        f"<section id='events'><h2>Recent events <small>newest first</small></h2>{body}</section>"
    )


__all__ = ["CONTENT_SECURITY_POLICY", "countdown", "login_page", "savings_chart", "status_page"]
