"""`newsletter doctor` against a real DNS server, SMTP relay and web server on 127.0.0.1."""

from __future__ import annotations

import base64
import dataclasses
import json
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from dnslib import QTYPE, RR, TXT, A, DNSRecord
from dnslib.server import BaseResolver, DNSLogger, DNSServer
from werkzeug.serving import make_server

from newsletter.core.app import App
from newsletter.delivery.doctor import FAIL, OK, Resolver, SpfEvaluator, run_checks
from tests import factories as f
from tests.smtp_server import SmtpTestServer, make_certificate

DOMAIN = "news.example.test"


class Zone(BaseResolver):
    """Answers from a dict of (name, type) -> records; anything else is NXDOMAIN."""

    def __init__(self) -> None:
        self.records: dict[tuple[str, str], list[str]] = {}

    def add(self, name: str, kind: str, *values: str) -> None:
        self.records.setdefault((name.rstrip(".").lower(), kind), []).extend(values)

    def resolve(self, request: DNSRecord, handler: object) -> DNSRecord:
        reply = request.reply()
        name = str(request.q.qname).rstrip(".").lower()
        kind = QTYPE[request.q.qtype]
        for value in self.records.get((name, kind), []):
            if kind == "TXT":
                chunks = [value[i : i + 255] for i in range(0, len(value), 255)]
                reply.add_answer(RR(request.q.qname, QTYPE.TXT, rdata=TXT(chunks), ttl=60))
            elif kind == "A":
                reply.add_answer(RR(request.q.qname, QTYPE.A, rdata=A(value), ttl=60))
            elif kind == "MX":
                reply.add_answer(*RR.fromZone(f"{name}. 60 IN MX 10 {value}."))
        if not reply.rr and not any(n == name for n, _ in self.records):
            reply.header.rcode = 3  # NXDOMAIN
        return reply


@pytest.fixture
def zone() -> Iterator[tuple[Zone, str]]:
    resolver = Zone()
    quiet = DNSLogger("-request,-reply,-truncated,-error,-recv,-send,-data", prefix=False)
    server = DNSServer(resolver, port=0, address="127.0.0.1", logger=quiet)
    server.start_thread()
    port = server.server.server_address[1]
    yield resolver, f"127.0.0.1:{port}"
    server.stop()
    server.server.server_close()


@pytest.fixture
def dkim_key(tmp_path: Path) -> tuple[Path, str]:
    key = tmp_path / "dkim.pem"
    subprocess.run(["openssl", "genrsa", "-traditional", "-out", str(key), "1024"], check=True,
                   capture_output=True)  # fmt: skip
    der = subprocess.run(["openssl", "rsa", "-in", str(key), "-pubout", "-outform", "DER"],
                         check=True, capture_output=True).stdout  # fmt: skip
    return key, base64.b64encode(der).decode()


@pytest.fixture
def site(app: App) -> Iterator[str]:
    """The web app served on 127.0.0.1; base_url points at it."""
    holder: dict[str, object] = {}
    server = make_server("127.0.0.1", 0, lambda e, s: holder["app"](e, s), threaded=True)
    base = f"http://127.0.0.1:{server.server_port}"
    app.settings = dataclasses.replace(app.settings, base_url=base)
    holder["app"] = f.web_app(app, testing=False)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield base
    server.shutdown()
    server.server_close()


@pytest.fixture
def relay(tmp_path: Path) -> Iterator[tuple[SmtpTestServer, Path]]:
    cert, key = make_certificate(tmp_path)
    with SmtpTestServer(tls="starttls", certificate=(cert, key), auth=("mailer", "s3cret")) as s:
        yield s, cert


def _good_zone(zone: Zone, dkim_public: str) -> None:
    # SPF is checked where receivers check it: the return path's domain (the bounce domain).
    zone.add(f"bounces.{DOMAIN}", "TXT", "v=spf1 include:_spf.relay.example.test -all")
    zone.add("_spf.relay.example.test", "TXT", "v=spf1 ip4:127.0.0.0/8 ~all")
    zone.add(f"mail._domainkey.{DOMAIN}", "TXT", f"v=DKIM1; k=rsa; p={dkim_public}")
    zone.add(f"_dmarc.{DOMAIN}", "TXT", "v=DMARC1; p=none")
    zone.add(f"bounces.{DOMAIN}", "MX", f"mx.{DOMAIN}")
    zone.add(f"mx.{DOMAIN}", "A", "127.0.0.1")


def _configure(app: App, relay: SmtpTestServer, cert: Path, key: Path) -> None:
    transport = f"smtp://mailer:s3cret@127.0.0.1:{relay.port}?tls=starttls&cafile={cert}"
    app.settings = dataclasses.replace(
        app.settings,
        transport=transport,
        list_id=f"Daily Papers <papers.{DOMAIN}>",
        dkim_selector="mail",
        dkim_domain=DOMAIN,
        dkim_private_key_file=str(key),
        bounce_domain=f"bounces.{DOMAIN}",
    )


def _by_name(checks):
    return {c.name: c for c in checks}


def test_a_good_setup_passes_every_check_but_https(app, zone, dkim_key, site, relay):
    resolver_zone, server = zone
    key, public = dkim_key
    _good_zone(resolver_zone, public)
    _configure(app, relay[0], relay[1], key)
    checks = _by_name(run_checks(app, Resolver(server), timeout=10))
    for name in ("secret key", "postal address", "list id", "schema", "spf", "dkim", "dmarc"):
        assert checks[name].status == OK, checks[name]
    assert checks["bounce domain"].status == OK and "mx.news.example.test" in checks[
        "bounce domain"
    ].message
    assert checks["relay"].status == OK and "STARTTLS" in checks["relay"].message
    assert "credentials accepted" in checks["relay"].message
    # Served over plain http on 127.0.0.1: it answers, but is not https.
    assert checks["base url"].status == "warn" and "one-click" in checks["base url"].message


def test_broken_records_each_fail_with_what_to_fix(app, zone, dkim_key, site, relay, tmp_path):
    resolver_zone, server = zone
    key, _ = dkim_key
    other = tmp_path / "other.pem"
    subprocess.run(["openssl", "genrsa", "-traditional", "-out", str(other), "1024"], check=True,
                   capture_output=True)  # fmt: skip
    wrong = subprocess.run(["openssl", "rsa", "-in", str(other), "-pubout", "-outform", "DER"],
                           check=True, capture_output=True).stdout  # fmt: skip
    resolver_zone.add(f"bounces.{DOMAIN}", "TXT", "v=spf1 ip4:192.0.2.1 -all")
    published = base64.b64encode(wrong).decode()
    resolver_zone.add(f"mail._domainkey.{DOMAIN}", "TXT", f"v=DKIM1; p={published}")
    _configure(app, relay[0], relay[1], key)
    app.settings = dataclasses.replace(app.settings, postal_address="")
    checks = _by_name(run_checks(app, Resolver(server), timeout=10))
    assert checks["spf"].status == FAIL and "fail" in checks["spf"].message
    assert "ip4" in checks["spf"].fix
    assert checks["dkim"].status == FAIL and "not the public half" in checks["dkim"].message
    assert checks["dmarc"].status == FAIL and "_dmarc" in checks["dmarc"].fix
    assert checks["bounce domain"].status == FAIL
    assert checks["postal address"].status == FAIL


def test_wrong_relay_credentials_fail(app, zone, dkim_key, relay):
    _, server = zone
    smtp, cert = relay
    _configure(app, smtp, cert, dkim_key[0])
    transport = f"smtp://mailer:wrong@127.0.0.1:{smtp.port}?tls=starttls&cafile={cert}"
    app.settings = dataclasses.replace(app.settings, transport=transport)
    check = _by_name(run_checks(app, Resolver(server), timeout=10))["relay"]
    assert check.status == FAIL and "refused the credentials" in check.message


def test_spf_evaluation_follows_includes_redirects_and_mx(zone):
    resolver_zone, server = zone
    resolver_zone.add("a.test", "TXT", "v=spf1 include:b.test -all")
    resolver_zone.add("b.test", "TXT", "v=spf1 redirect=c.test")
    resolver_zone.add("c.test", "TXT", "v=spf1 mx -all")
    resolver_zone.add("c.test", "MX", "mx.c.test")
    resolver_zone.add("mx.c.test", "A", "198.51.100.7")
    resolver_zone.add("loop.test", "TXT", "v=spf1 include:loop.test -all")
    resolver = Resolver(server)
    assert SpfEvaluator(resolver).check("198.51.100.7", "a.test") == "pass"
    assert SpfEvaluator(resolver).check("198.51.100.8", "a.test") == "fail"
    assert SpfEvaluator(resolver).check("198.51.100.7", "nothing.test") == "none"
    assert SpfEvaluator(resolver).check("198.51.100.7", "loop.test") == "permerror"


def test_the_cli_prints_one_line_per_check_and_exits_1_on_a_failure(app, run, zone):
    _, server = zone
    result = run("doctor", "--dns-server", server, "--timeout", "2")
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert len(lines) == 13
    assert all(line.split()[0] in ("ok", "warn", "fail", "skip") for line in lines)
    assert any(line.startswith("fail") and "base url" in line for line in lines)
    as_json = run("doctor", "--dns-server", server, "--timeout", "2", "--json")
    checks = json.loads(as_json.stdout)
    assert as_json.exit_code == 1 and {c["name"] for c in checks} >= {"spf", "relay", "schema"}
    assert {c["status"] for c in checks if c["name"] in ("spf", "relay")} == {"skip"}


def test_key_files_every_user_can_read_are_a_warning_with_the_fix(
    run, settings, zone, dkim_key, tmp_path
):
    _, server = zone
    key, _ = dkim_key
    (tmp_path / "newsletter.toml").write_text(
        f'dkim_selector = "mail"\ndkim_domain = "{DOMAIN}"\ndkim_private_key_file = "{key}"\n',
        encoding="utf-8",
    )
    secret = Path(settings.var_dir) / "secret_key"
    secret.write_text("k" * 48 + "\n", encoding="utf-8")
    key.chmod(0o644)
    secret.chmod(0o640)

    result = run("doctor", "--dns-server", server, "--timeout", "2")
    [line] = [line for line in result.output.splitlines() if "key files" in line]
    assert line.startswith("warn") and f"{key} is readable or writable by every user" in line
    assert line.endswith(f"-> chmod 600 {key}"), "the group-only secret key is not named"

    key.chmod(0o600)
    result = run("doctor", "--dns-server", server, "--timeout", "2", "--json")
    [check] = [c for c in json.loads(result.stdout) if c["name"] == "key files"]
    assert check["status"] == OK and str(secret) in check["message"]


def test_a_malformed_dns_server_is_one_line(run):
    result = run("doctor", "--dns-server", "127.0.0.1:port")
    assert result.exit_code == 2 and "--dns-server" in result.output
    assert "Traceback" not in result.output
