"""The status page in a real browser: headless Chromium takes a screenshot (a valid PNG of the
window's size) and dumps the DOM, which must list every backend with the state the API
reports, both as the server rendered it and after the page's own script refreshed it.

Topology: one TCP listener -> pool "web" with four backends in four states: up (a Python line
server), down (nothing listens; tcp check), draining and disabled (set through the API). The
admin endpoint listens on a kernel-chosen loopback port with a token, which the browser
passes in the page's query. Chromium runs with --no-sandbox (CI runs as root) and a profile
directory inside the test's temp dir.
"""

import os
import shutil
import struct
import subprocess
import zlib
from html.parser import HTMLParser

from admin_helpers import TOKEN, AdminFulcrum, admin_config, curl, wait_until
from backends import Backend, check, line_handler, unused_address
from fulcrum_it import run_tests, tmpdir

WIDTH, HEIGHT = 1200, 700
CHROMIUM_TIMEOUT = 90

_state = {}


def setup():
    if _state:
        return _state
    up = Backend(line_handler, name="up")
    draining = Backend(line_handler, name="draining")
    disabled = Backend(line_handler, name="disabled")
    down = unused_address()
    health = 'type = "tcp"\ninterval = "200ms"\ntimeout = "100ms"\nrise = 1\nfall = 1'
    f = AdminFulcrum(admin_config({"web": {"backends": [(up.address, ""), (down, ""),
                                                        (draining.address, ""),
                                                        (disabled.address, "")],
                                           "health": health}}))
    for backend, verb in ((draining.address, "drain"), (disabled.address, "disable")):
        r = curl(f, f"/api/v1/pools/web/backends/{backend}/{verb}", method="POST")
        check(r.status == 200, f"{verb}: {r}", f)
    expected = {up.address: "up", down: "down", draining.address: "draining",
                disabled.address: "disabled"}
    _state.update(f=f, expected=expected, dir=tmpdir("fulcrum-page-"))
    wait_until(lambda: api_states(f) == expected, what="the four states")
    return _state


def api_states(f):
    pool = curl(f, "/api/v1/status").json()["pools"][0]
    return {b["address"]: b["state"] for b in pool["backends"]}


def chromium(args, profile):
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    check(exe is not None, "chromium missing (Debian package chromium)")
    cmd = [exe, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
           "--disable-dev-shm-usage", f"--user-data-dir={profile}", *args]
    p = subprocess.run(cmd, capture_output=True, timeout=CHROMIUM_TIMEOUT)
    return p


class Rows(HTMLParser):
    """Collects backend rows (data-backend, data-state, class, text) and every URL-bearing
    attribute, to prove the page loads nothing from elsewhere."""

    def __init__(self):
        super().__init__()
        self.rows = []
        self.urls = []
        self.refresh_text = ""
        self._row = None
        self._in_refresh = False

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        for key in ("src", "href", "action"):
            if key in a:
                self.urls.append(a[key])
        if tag == "tr" and "data-backend" in a:
            self._row = {"backend": a["data-backend"], "state": a.get("data-state"),
                         "class": a.get("class", ""), "text": ""}
            self.rows.append(self._row)
        if a.get("id") == "refresh":
            self._in_refresh = True

    def handle_endtag(self, tag):
        if tag == "tr":
            self._row = None
        if tag == "span":
            self._in_refresh = False

    def handle_data(self, data):
        if self._row is not None:
            self._row["text"] += data + " "
        if self._in_refresh:
            self.refresh_text += data


def check_rows(dom, expected, what):
    parser = Rows()
    parser.feed(dom)
    got = {r["backend"]: r["state"] for r in parser.rows}
    check(got == expected, f"{what}: backends and states {got}, expected {expected}")
    for r in parser.rows:
        check(f"state-{r['state']}" in r["class"].split(), f"{what}: row class {r}")
        check(r["text"].split()[0] == r["backend"] and r["state"] in r["text"].split(),
              f"{what}: row text {r['text']!r}")
    check(parser.urls == [], f"{what}: the page refers to {parser.urls}")
    return parser


# Served as self-contained HTML with a policy that forbids loading anything from elsewhere.
def test_page_is_self_contained():
    s = setup()
    f = s["f"]
    r = curl(f, "/")
    check(r.status == 200 and r.headers["content-type"].startswith("text/html"), f"page {r}")
    policy = r.headers.get("content-security-policy", "")
    check("default-src 'none'" in policy and "connect-src 'self'" in policy, f"CSP {policy!r}")
    check_rows(r.body, s["expected"], "served HTML")
    check(curl(f, "/", token=None).status == 401, "page without token")


# A screenshot of the page at a fixed window size is a valid, non-empty PNG of that size.
def test_screenshot_is_a_valid_png():
    s = setup()
    f = s["f"]
    shot = os.path.join(s["dir"], "status.png")
    p = chromium([f"--screenshot={shot}", f"--window-size={WIDTH},{HEIGHT}",
                  "--virtual-time-budget=3000", f.url(f"/?token={TOKEN}")],
                 os.path.join(s["dir"], "profile-shot"))
    check(os.path.exists(shot), f"no screenshot; chromium exit {p.returncode}: "
                                f"{p.stderr.decode()[-2000:]}")
    with open(shot, "rb") as fh:
        png = fh.read()
    check(len(png) > 2000, f"screenshot is only {len(png)} bytes")
    check(png[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG signature")
    length, kind = struct.unpack(">I4s", png[8:16])
    check(kind == b"IHDR" and length == 13, f"first chunk {kind!r}")
    width, height = struct.unpack(">II", png[16:24])
    check((width, height) == (WIDTH, HEIGHT), f"screenshot is {width}x{height}")
    crc = struct.unpack(">I", png[29:33])[0]
    check(crc == zlib.crc32(png[12:29]), "IHDR checksum")
    check(png[-12:] == b"\x00\x00\x00\x00IEND\xaeB`\x82", "PNG does not end with IEND")


# The DOM lists every backend with its state: first as served (the script has not run a
# refresh yet), then after the script fetched /api/v1/status and redrew the page.
def test_dom_lists_every_backend_with_its_state():
    s = setup()
    f = s["f"]
    url = f.url(f"/?token={TOKEN}")
    p = chromium(["--dump-dom", url], os.path.join(s["dir"], "profile-dom"))
    dom = p.stdout.decode(errors="replace")
    check(p.returncode == 0 and "</html>" in dom, f"dump-dom exit {p.returncode}: "
                                                  f"{p.stderr.decode()[-2000:]}")
    check_rows(dom, s["expected"], "first paint")

    # Virtual time lets the 2 s refresh timer fire; the fetch itself is real.
    p = chromium(["--virtual-time-budget=6000", "--dump-dom", url],
                 os.path.join(s["dir"], "profile-refresh"))
    dom = p.stdout.decode(errors="replace")
    parser = check_rows(dom, s["expected"], "after refresh")
    check(parser.refresh_text.startswith("updated"),
          f"the script did not redraw the page: refresh line {parser.refresh_text!r}")

    check(f.stop() == 0, "fulcrum exit code", f)


if __name__ == "__main__":
    run_tests(globals())
