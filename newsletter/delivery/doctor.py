"""Check the sending setup: DNS (SPF, DKIM, DMARC, bounce routing), the relay, the web, settings.

Each check gives one line: ok, warn, fail or skip, and what to fix. Nothing is changed and
nothing is sent: the relay check stops after EHLO, STARTTLS and AUTH; the web check posts a
one-click unsubscribe with a link that names nobody.
"""

from __future__ import annotations

import base64
import ipaddress
import smtplib
import ssl
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import dns.exception
import dns.resolver
import httpx

from newsletter.bounces.classify import bounce_domain, verp_enabled
from newsletter.content.headers import parse_from
from newsletter.core import db, identity
from newsletter.core.app import App
from newsletter.core.config import Settings
from newsletter.core.errors import ConfigError
from newsletter.core.secret_key import SECRET_KEY_FILE, exposed_to_others
from newsletter.delivery.transports import SmtpTransport, make_transport
from newsletter.matching.matches import matching_mode
from newsletter.papers.sources.registry import scheduled_sources

OK, WARN, FAIL, SKIP = "ok", "warn", "fail", "skip"
SPF_LOOKUP_LIMIT = 10  # RFC 7208 section 4.6.4
DEFAULT_LIST_ID_DOMAIN = "localhost"
LOCAL_HOSTS = ("localhost", "127.0.0.1", "::1")


@dataclass(frozen=True)
class Check:
    """The outcome of one check."""

    name: str
    status: str
    message: str
    fix: str = ""

    def to_dict(self) -> dict[str, str]:
        return asdict(self)


class Resolver:
    """TXT, MX and address look-ups through dnspython, optionally against one server."""

    def __init__(self, server: str | None = None, timeout: float = 5.0) -> None:
        self._resolver = dns.resolver.Resolver(configure=server is None)
        if server is not None:
            host, _, port = server.rpartition(":") if server.count(":") == 1 else (server, "", "")
            self._resolver.nameservers = [host or server]
            self._resolver.port = int(port) if port else 53
        self._resolver.lifetime = timeout

    def _answer(self, name: str, kind: str) -> list[Any]:
        try:
            return list(self._resolver.resolve(name, kind))
        except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer, dns.resolver.NoNameservers):
            return []

    def txt(self, name: str) -> list[str]:
        """Return the TXT records of a name, each with its strings joined."""
        return [b"".join(r.strings).decode("utf-8", "replace") for r in self._answer(name, "TXT")]

    def mx(self, name: str) -> list[str]:
        """Return the mail exchangers of a name, best first."""
        records = sorted(self._answer(name, "MX"), key=lambda r: r.preference)
        return [str(r.exchange).rstrip(".") for r in records]

    def addresses(self, name: str) -> list[str]:
        """Return the IPv4 and IPv6 addresses of a name."""
        return [r.address for kind in ("A", "AAAA") for r in self._answer(name, kind)]


def run_checks(app: App, resolver: Resolver, *, timeout: float = 10.0) -> list[Check]:
    """Run every check; a check that cannot run says why instead of stopping the others."""
    settings = app.settings
    checks: list[Callable[[], Check]] = [
        lambda: check_secret_key(settings),
        lambda: check_key_files(settings),
        lambda: check_postal_address(settings),
        lambda: check_list_id(settings),
        lambda: check_schema(app),
        lambda: check_matching(settings),
        lambda: check_sources(settings),
        lambda: check_base_url(settings, timeout),
        lambda: check_spf(settings, resolver),
        lambda: check_dkim(settings, resolver),
        lambda: check_dmarc(settings, resolver),
        lambda: check_bounce_routing(settings, resolver),
        lambda: check_relay(settings, timeout),
    ]
    results = []
    for check in checks:
        try:
            results.append(check())
        except dns.exception.DNSException as exc:
            results.append(Check("dns", FAIL, f"DNS look-up failed: {exc}", "check the resolver"))
    return results


# --- settings and schema ------------------------------------------------------------------


def check_secret_key(settings: Settings) -> Check:
    if len(settings.secret_key.encode()) >= 32:
        return Check("secret key", OK, "set, 32 bytes or more")
    return Check("secret key", FAIL, "missing or short", "set NEWSLETTER_SECRET_KEY")


def check_key_files(settings: Settings) -> Check:
    """Warn about a secret key file or DKIM key that every user of the machine can read."""
    paths = [Path(settings.var_dir) / SECRET_KEY_FILE]
    if settings.dkim_private_key_file:
        paths.append(Path(settings.dkim_private_key_file))
    present = [path for path in paths if path.is_file()]
    if not present:
        return Check("key files", SKIP, "no secret key file nor DKIM key")
    exposed = [path for path in present if exposed_to_others(path)]
    if exposed:
        what = "; ".join(exposed_to_others(path) for path in exposed)
        return Check("key files", WARN, what, "chmod 600 " + " ".join(map(str, exposed)))
    return Check("key files", OK, f"{', '.join(map(str, present))}: not open to every user")


def check_postal_address(settings: Settings) -> Check:
    if settings.postal_address.strip():
        return Check("postal address", OK, "printed in every footer")
    return Check(
        "postal address",
        FAIL,
        "empty: bulk mail must carry the sender's postal address (CAN-SPAM)",
        "set postal_address (NEWSLETTER_POSTAL_ADDRESS)",
    )


def check_list_id(settings: Settings) -> Check:
    value = identity.list_id(settings)
    if value.rstrip(">").endswith("." + DEFAULT_LIST_ID_DOMAIN):
        return Check(
            "list id",
            WARN,
            f"{value!r} is under {DEFAULT_LIST_ID_DOMAIN}",
            "set from_address, or list_id ('Name <list.your-domain>'), so filters know the list",
        )
    return Check("list id", OK, value)


def check_matching(settings: Settings) -> Check:
    """Say whether papers are matched by meaning, or why only by keywords."""
    by_meaning, how = matching_mode(settings.match_neighbours)
    if by_meaning:
        return Check("matching", OK, how)
    return Check("matching", WARN, how, "topics outside their keywords' words are missed")


def check_sources(settings: Settings) -> Check:
    """Say which sources the scheduler fetches, or which configured name is no source."""
    try:
        sources = scheduled_sources(settings)
    except ConfigError as exc:
        return Check("sources", FAIL, str(exc), "`newsletter papers sources` lists the names")
    if not sources:
        return Check("sources", WARN, "no source is scheduled: nothing is fetched")
    return Check("sources", OK, "scheduled: " + ", ".join(s.name for s in sources))


def check_schema(app: App) -> Check:
    current, head = db.current_revision(app.engine), db.head_revision(app.engine)
    if current == head:
        return Check("schema", OK, f"at {head}")
    return Check("schema", FAIL, f"at {current or 'nothing'}, expected {head}", "newsletter init")


# --- the web ------------------------------------------------------------------------------


def check_base_url(settings: Settings, timeout: float) -> Check:
    url = settings.base_url.rstrip("/")
    try:
        response = httpx.post(
            f"{url}/unsubscribe/0.doctor.check",
            data={"List-Unsubscribe": "One-Click"},
            timeout=timeout,
            follow_redirects=False,
        )
    except httpx.HTTPError as exc:
        return Check("base url", FAIL, f"{url} does not answer: {exc}", "start newsletter serve")
    if response.is_redirect or response.status_code != 400 or "invalid" not in response.text:
        return Check(
            "base url",
            FAIL,
            f"a one-click POST to {url}/unsubscribe/... got {response.status_code}, not our page",
            "point base_url at newsletter serve; proxies must pass POSTs without redirects",
        )
    if not url.startswith("https://"):
        status = WARN if _host(url) in LOCAL_HOSTS else FAIL
        return Check(
            "base url",
            status,
            f"{url} answers the one-click POST, but not over https",
            "mail providers require https for one-click unsubscribe: put TLS in front",
        )
    return Check("base url", OK, f"{url} answers the one-click POST over https")


def _host(url: str) -> str:
    return httpx.URL(url).host


# --- DNS ----------------------------------------------------------------------------------


def envelope_domain(settings: Settings) -> str:
    """Return the domain of the envelope sender (the return path receivers check SPF on)."""
    if verp_enabled(settings):
        return bounce_domain(settings)
    return parse_from(settings.from_address)[1].rpartition("@")[2].lower()


def from_domain(settings: Settings) -> str:
    return parse_from(settings.from_address)[1].rpartition("@")[2].lower()


def _smtp_options(settings: Settings) -> Any:
    transport = make_transport(settings.transport)
    return transport.options if isinstance(transport, SmtpTransport) else None


def check_spf(settings: Settings, resolver: Resolver) -> Check:
    options = _smtp_options(settings)
    if options is None:
        return Check("spf", SKIP, "the transport is a Maildir: nothing is sent over SMTP")
    domain = envelope_domain(settings)
    records = [r for r in resolver.txt(domain) if r.lower().startswith("v=spf1")]
    if not records:
        return Check(
            "spf",
            FAIL,
            f"{domain} has no SPF record",
            f'add TXT "v=spf1 a:{options.host} ~all" (or your relay\'s include) to {domain}',
        )
    if len(records) > 1:
        return Check("spf", FAIL, f"{domain} has {len(records)} SPF records", "keep exactly one")
    ips = _relay_addresses(options.host, resolver)
    if not ips:
        return Check("spf", WARN, f"cannot resolve the relay {options.host} to check SPF")
    results = {ip: SpfEvaluator(resolver).check(ip, domain) for ip in ips}
    refused = [ip for ip, result in results.items() if result != "pass"]
    if not refused:
        return Check("spf", OK, f"{domain} allows the relay ({', '.join(ips)})")
    return Check(
        "spf",
        FAIL,
        f"{domain}'s SPF gives {results[refused[0]]} for the relay's {refused[0]}",
        f"add ip4/ip6:{refused[0]} or the relay's include: to {domain}'s SPF record",
    )


def _relay_addresses(host: str, resolver: Resolver) -> list[str]:
    try:
        return [str(ipaddress.ip_address(host))]
    except ValueError:
        return resolver.addresses(host)


class SpfEvaluator:
    """A small RFC 7208 evaluator: ip4, ip6, a, mx, include, redirect and all."""

    def __init__(self, resolver: Resolver) -> None:
        self.resolver = resolver
        self.lookups = 0

    def check(self, ip: str, domain: str) -> str:
        """Return pass, fail, softfail, neutral, none or permerror for ip sending as domain."""
        records = [r for r in self.resolver.txt(domain) if r.lower().startswith("v=spf1")]
        if len(records) != 1:
            return "none" if not records else "permerror"
        address = ipaddress.ip_address(ip)
        redirect = None
        for term in records[0].split()[1:]:
            if term.lower().startswith("redirect="):
                redirect = term.split("=", 1)[1]
                continue
            if "=" in term:
                continue  # other modifiers (exp=) do not decide
            qualifier, mechanism = (term[0], term[1:]) if term[0] in "+-~?" else ("+", term)
            matched = self._matches(mechanism, address, domain)
            if matched is None:
                return "permerror"
            if matched:
                return {"+": "pass", "-": "fail", "~": "softfail", "?": "neutral"}[qualifier]
        if redirect:
            return self._count() or self.check(ip, redirect)
        return "neutral"

    def _count(self) -> str:
        self.lookups += 1
        return "permerror" if self.lookups > SPF_LOOKUP_LIMIT else ""

    def _matches(self, mechanism: str, address: Any, domain: str) -> bool | None:
        name, _, arg = mechanism.partition(":")
        name = name.lower()
        if name == "all":
            return True
        if name in ("ip4", "ip6"):
            return address in ipaddress.ip_network(arg, strict=False)
        if name.split("/")[0] in ("a", "mx"):
            return self._host_mechanism(mechanism, address, domain)
        if name == "include":
            if self._count():
                return None
            result = self.check(str(address), arg)
            return None if result in ("permerror", "none") else result == "pass"
        return False  # exists, ptr: not evaluated here

    def _host_mechanism(self, mechanism: str, address: Any, domain: str) -> bool | None:
        if self._count():
            return None
        head, _, cidr = mechanism.partition("/")
        kind, _, target = head.partition(":")
        target = target or domain
        hosts = self.resolver.mx(target) if kind.lower() == "mx" else [target]
        v4_prefix = int(cidr.split("/")[0]) if cidr.split("/")[0].isdigit() else 32
        for host in hosts:
            for ip in self.resolver.addresses(host):
                candidate = ipaddress.ip_address(ip)
                if candidate.version != address.version:
                    continue
                prefix = v4_prefix if candidate.version == 4 else 128
                if address in ipaddress.ip_network(f"{candidate}/{prefix}", strict=False):
                    return True
        return False


def _dkim_setting(settings: Settings, name: str) -> str:
    return str(getattr(settings, name) or "").strip()


def check_dkim(settings: Settings, resolver: Resolver) -> Check:
    selector = _dkim_setting(settings, "dkim_selector")
    key_file = _dkim_setting(settings, "dkim_private_key_file")
    if not (selector and key_file):
        return Check(
            "dkim",
            WARN,
            "not configured: unsigned mail is often filtered or rejected",
            "set dkim_selector, dkim_domain and dkim_private_key_file (see deploy/README.md)",
        )
    domain = _dkim_setting(settings, "dkim_domain") or from_domain(settings)
    name = f"{selector}._domainkey.{domain}"
    published = _published_key(resolver.txt(name))
    if published is None:
        return Check("dkim", FAIL, f"no DKIM key at {name}", f"publish v=DKIM1; p=... at {name}")
    try:
        ours = _public_key_of(key_file)
    except (OSError, ValueError) as exc:
        return Check("dkim", FAIL, f"cannot read {key_file}: {exc}", "fix dkim_private_key_file")
    if ours != published:
        return Check(
            "dkim",
            FAIL,
            f"the key at {name} is not the public half of {key_file}",
            "publish the public key of the configured private key (dknewkey prints both)",
        )
    return Check("dkim", OK, f"{name} matches the configured key")


def _published_key(records: list[str]) -> tuple[int, int] | None:
    """Return (modulus, exponent) of the RSA key a DKIM record publishes."""
    from dkim.crypto import UnparsableKeyError, parse_public_key

    for record in records:
        tags = dict(part.strip().partition("=")[::2] for part in record.split(";") if "=" in part)
        if tags.get("p"):
            try:
                key = parse_public_key(base64.b64decode("".join(tags["p"].split())))
            except (UnparsableKeyError, ValueError):
                return (0, 0)  # published, but not an RSA key we can read
            return key["modulus"], key["publicExponent"]
    return None


def _public_key_of(path: str) -> tuple[int, int]:
    """Return (modulus, exponent) of an RSA private key in PEM."""
    from dkim.crypto import UnparsableKeyError, parse_pem_private_key

    with open(path, "rb") as handle:
        data = handle.read()
    try:
        key = parse_pem_private_key(data)
    except UnparsableKeyError as exc:
        raise ValueError(f"not an RSA private key in PEM ({exc})") from exc
    return key["modulus"], key["publicExponent"]


def check_dmarc(settings: Settings, resolver: Resolver) -> Check:
    domain = from_domain(settings)
    records = [r for r in resolver.txt(f"_dmarc.{domain}") if r.lower().startswith("v=dmarc1")]
    if not records:
        return Check(
            "dmarc",
            FAIL,
            f"no DMARC record at _dmarc.{domain}",
            f'add TXT "v=DMARC1; p=none; rua=mailto:dmarc@{domain}" at _dmarc.{domain}',
        )
    spf_aligned = _aligned(envelope_domain(settings), domain)
    dkim_domain = _dkim_setting(settings, "dkim_domain") or domain
    dkim_aligned = bool(_dkim_setting(settings, "dkim_selector")) and _aligned(dkim_domain, domain)
    if not (spf_aligned or dkim_aligned):
        return Check(
            "dmarc",
            FAIL,
            f"neither the return path ({envelope_domain(settings)}) nor DKIM aligns with {domain}",
            "sign with DKIM for the From domain, or use a bounce domain under it",
        )
    how = " and ".join(n for n, ok in (("SPF", spf_aligned), ("DKIM", dkim_aligned)) if ok)
    return Check("dmarc", OK, f"_dmarc.{domain} exists; {how} aligned with From")


def _aligned(domain: str, with_domain: str) -> bool:
    """Relaxed alignment, approximated: the same domain or one under the other."""
    a, b = domain.lower().rstrip("."), with_domain.lower().rstrip(".")
    return a == b or a.endswith("." + b) or b.endswith("." + a)


def check_bounce_routing(settings: Settings, resolver: Resolver) -> Check:
    if not verp_enabled(settings):
        return Check(
            "bounce domain",
            WARN,
            "not set: bounces cannot be tied to their delivery, and forged ones are harder to tell",
            "set bounce_domain and route its mail to newsletter bounces process",
        )
    domain = bounce_domain(settings)
    exchangers = resolver.mx(domain)
    if exchangers:
        return Check("bounce domain", OK, f"{domain} routes to {exchangers[0]}")
    if resolver.addresses(domain):
        return Check("bounce domain", WARN, f"{domain} has no MX, mail falls back to its A record")
    return Check("bounce domain", FAIL, f"{domain} has no MX or address", f"add an MX for {domain}")


# --- the relay ----------------------------------------------------------------------------


def check_relay(settings: Settings, timeout: float) -> Check:
    options = _smtp_options(settings)
    if options is None:
        return Check("relay", SKIP, "the transport is a Maildir")
    where = f"{options.host}:{options.port}"
    context = options.ssl_context or ssl.create_default_context()
    try:
        if options.tls == "ssl":
            client: smtplib.SMTP = smtplib.SMTP_SSL(
                options.host, options.port, timeout=timeout, context=context
            )
        else:
            client = smtplib.SMTP(options.host, options.port, timeout=timeout)
        with client:
            return _relay_session(client, options, context, where)
    except (OSError, smtplib.SMTPException) as exc:
        return Check("relay", FAIL, f"{where}: {exc}", "check the transport's host and port")


def _relay_session(client: smtplib.SMTP, options: Any, context: Any, where: str) -> Check:
    code, _ = client.ehlo()
    if code != 250:
        return Check("relay", FAIL, f"{where} refused EHLO ({code})")
    notes = []
    if options.tls == "starttls":
        client.starttls(context=context)
        client.ehlo()
        notes.append("STARTTLS")
    elif options.tls == "none":
        if client.has_extn("starttls"):
            return Check(
                "relay",
                WARN,
                f"{where} offers STARTTLS but the transport does not use it",
                "add ?tls=starttls to the transport",
            )
        if options.host not in LOCAL_HOSTS:
            return Check("relay", WARN, f"{where} offers no STARTTLS", "use a relay with TLS")
    if options.username:
        try:
            client.login(options.username, options.password)
        except smtplib.SMTPAuthenticationError as exc:
            return Check("relay", FAIL, f"{where} refused the credentials ({exc.smtp_code})")
        notes.append("credentials accepted")
    return Check("relay", OK, f"{where} answers EHLO" + "".join(f", {n}" for n in notes))
