"""The server-certificate checks: each rule, its boundary, and independence of the verdicts."""

from __future__ import annotations

from datetime import datetime, timedelta

import certifi
import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID
from hypothesis import given, settings

from certflow.certs import (
    Code,
    ImportMode,
    Material,
    PublicRoots,
    Report,
    Severity,
    check,
    is_public_root,
    load,
)
from certflow.core.errors import InvalidInput

from .factory import DAY, HOST, NOW, Pki, build, ec_key, pem, pki, resign_weak, rsa_key, san
from .strategies import validity_periods

SECOND = timedelta(seconds=1)


def full(p: Pki) -> Material:
    """The whole upload: leaf, chain and key."""
    return Material.from_parts([p.leaf, p.intermediate, p.root], [p.leaf_key])


def run(p: Pki, host: str = HOST, now: datetime = NOW) -> Report:
    return check(full(p), host=host, now=now)


def codes(report: Report) -> set[str]:
    return {finding.code.value for finding in report.findings}


def test_a_good_private_certificate(good: Pki) -> None:
    report = run(good)
    assert report.ok
    assert codes(report) == {"trust_private"}
    assert report.recommended_mode is ImportMode.DISTRIBUTE_ROOT_FIRST
    assert not report.root_publicly_trusted
    assert report.chain == (good.leaf, good.intermediate, good.root)
    (finding,) = report.findings
    assert finding.severity is Severity.INFO
    assert "distribute it to every device" in finding.message


def test_every_finding_has_a_code_severity_and_message(good: Pki) -> None:
    report = check(Material.from_parts([good.leaf]), host="other.example.com", now=NOW + 400 * DAY)
    assert {"expired", "host_mismatch", "no_private_key", "chain_incomplete"} <= codes(report)
    for finding in report.findings:
        assert finding.message
        assert isinstance(finding.code, Code)
        assert isinstance(finding.severity, Severity)
    assert not report.ok
    assert report.to_dict()["findings"][0]["severity"] == "error"


# validity period: strictly less than 397 days


def test_validity_of_exactly_397_days_is_an_error() -> None:
    report = run(pki(not_after=NOW - 10 * DAY + 397 * DAY))
    (finding,) = [f for f in report.findings if f.code is Code.VALIDITY_PERIOD]
    assert finding.severity is Severity.ERROR
    assert finding.message == "valid for 397 days; must be less than 397 days"


def test_validity_of_397_days_minus_one_second_is_fine() -> None:
    assert run(pki(not_after=NOW - 10 * DAY + 397 * DAY - SECOND)).ok


@settings(max_examples=25, deadline=None)
@given(period=validity_periods)
def test_validity_rule_for_generated_periods(period: timedelta) -> None:
    start = NOW - DAY
    report = run(pki(not_before=start, not_after=start + period), now=NOW)
    assert (Code.VALIDITY_PERIOD in report.codes) is (period >= timedelta(days=397))


# key type, size, presence, match


def test_ec_key_is_refused() -> None:
    p = pki(leaf_key=ec_key())
    report = run(p)
    assert Code.KEY_TYPE in report.codes
    assert "RSA keys only" in next(f.message for f in report.findings if f.code is Code.KEY_TYPE)


def test_rsa_1024_is_refused() -> None:
    report = run(pki(leaf_key=rsa_key(1024)))
    (finding,) = [f for f in report.findings if f.code is Code.KEY_SIZE]
    assert finding.message == "the RSA key has 1024 bits; at least 2048 are needed"


def test_rsa_3072_is_fine() -> None:
    assert run(pki(leaf_key=rsa_key(3072))).ok


def test_missing_private_key(good: Pki) -> None:
    report = check(
        Material.from_parts([good.leaf, good.intermediate, good.root]), host=HOST, now=NOW
    )
    assert codes(report) == {"no_private_key", "trust_private"}


def test_private_key_given_separately(good: Pki) -> None:
    material = Material.from_parts([good.leaf, good.intermediate, good.root])
    assert check(material, host=HOST, now=NOW, key=good.leaf_key).ok


def test_key_of_another_certificate(good: Pki) -> None:
    material = Material.from_parts([good.leaf, good.intermediate, good.root])
    report = check(material, host=HOST, now=NOW, key=rsa_key(2048, 7))
    assert codes(report) == {"key_mismatch", "trust_private"}


def test_no_certificate_at_all() -> None:
    report = check(Material.from_parts([], [rsa_key()]), host=HOST, now=NOW)
    assert codes(report) == {"no_certificate"}
    assert report.findings[0].message == (
        "no server certificate: only a private key was given; upload the certificate the CA issued"
    )
    assert report.recommended_mode is None  # nothing to import, so no import mode
    assert report.to_dict()["recommended_mode"] is None


def test_only_ca_certificates(good: Pki) -> None:
    report = check(Material.from_parts([good.root, good.intermediate]), host=HOST, now=NOW)
    assert codes(report) == {"no_certificate"}
    assert report.findings[0].message == (
        "no server certificate: only CA certificates were given (a chain file?); upload the "
        "certificate the CA issued"
    )
    assert report.recommended_mode is None


# time window, and honest host/chain verdicts for certificates outside it


def test_expired_still_gets_honest_host_and_chain_verdicts(good: Pki) -> None:
    after = good.leaf.not_valid_after_utc + 5 * DAY
    report = run(good, now=after)
    assert codes(report) == {"expired", "trust_private"}
    assert report.chain == (good.leaf, good.intermediate, good.root)
    assert "expired on" in report.findings[0].message
    wrong_host = run(good, host="other.example.com", now=after)
    assert codes(wrong_host) == {"expired", "host_mismatch", "trust_private"}


def test_not_yet_valid_still_gets_honest_verdicts() -> None:
    p = pki(not_before=NOW + 3 * DAY)
    assert codes(run(p)) == {"not_yet_valid", "trust_private"}
    assert codes(run(p, host="10.0.0.1")) == {"not_yet_valid", "host_mismatch", "trust_private"}


def test_time_boundaries(good: Pki) -> None:
    end, start = good.leaf.not_valid_after_utc, good.leaf.not_valid_before_utc
    assert Code.EXPIRED not in run(good, now=end).codes  # not_after itself is still valid
    assert Code.EXPIRED in run(good, now=end + SECOND).codes
    assert Code.NOT_YET_VALID not in run(good, now=start).codes
    assert Code.NOT_YET_VALID in run(good, now=start - SECOND).codes


def test_expiring_soon_is_a_warning(good: Pki) -> None:
    end = good.leaf.not_valid_after_utc
    report = run(good, now=end - 29 * DAY)
    assert report.ok
    (finding,) = [f for f in report.findings if f.code is Code.EXPIRING_SOON]
    assert finding.severity is Severity.WARNING
    assert "fewer than 30 days left" in finding.message
    assert Code.EXPIRING_SOON not in run(good, now=end - 30 * DAY).codes


def test_expired_intermediate_is_named() -> None:
    p = pki(ca_not_after=NOW - DAY, not_before=NOW - 20 * DAY)
    report = run(p)
    messages = [f.message for f in report.findings if f.code is Code.EXPIRED]
    assert any("intermediate 'certflow test intermediate' expired" in m for m in messages)
    assert any("root 'certflow test root' expired" in m for m in messages)


def test_naive_time_is_refused(good: Pki) -> None:
    with pytest.raises(InvalidInput, match="naive datetime"):
        run(good, now=datetime(2026, 1, 1))


# host: SAN only, RFC 6125 wildcards, IPs


@pytest.mark.parametrize(
    ("sans", "host", "covered"),
    [
        (["mdm.example.com"], "mdm.example.com", True),
        (["mdm.example.com"], "MDM.Example.com.", True),
        (["mdm.example.com"], "www.example.com", False),
        (["*.example.com"], "mdm.example.com", True),
        (["*.example.com"], "a.mdm.example.com", False),  # one label only
        (["*.example.com"], "example.com", False),  # not the apex
        (["*.mdm.example.com"], "x.mdm.example.com", True),
        (["10.0.0.1"], "10.0.0.1", True),
        (["10.0.0.1"], "10.0.0.2", False),
        (["2001:db8::1"], "2001:db8:0::1", True),
        (["2001:db8::1"], "[2001:db8::1]", True),
        (["mdm.example.com", "192.0.2.7"], "192.0.2.7", True),
    ],
)
def test_host_coverage(sans: list[str], host: str, covered: bool) -> None:
    report = run(pki(sans=san(*sans)), host=host)
    assert (Code.HOST_MISMATCH not in report.codes) is covered
    assert report.ok is covered


@pytest.mark.parametrize(
    ("host", "covered"), [("straße.de", True), ("STRASSE.de", False), ("xn--strae-oqa.de", True)]
)
def test_an_internationalised_host_is_matched_by_idna_2008(host: str, covered: bool) -> None:
    report = run(pki(host="xn--strae-oqa.de"), host=host)
    assert (Code.HOST_MISMATCH not in report.codes) is covered


def test_every_host_is_checked_and_reported() -> None:
    p = pki(sans=san(HOST, "192.0.2.7"))
    report = check(full(p), hosts=[HOST, "192.0.2.7", "10.0.0.9", "other.example.com"], now=NOW)
    mismatches = [f for f in report.findings if f.code is Code.HOST_MISMATCH]
    assert [f.host for f in mismatches] == ["10.0.0.9", "other.example.com"]
    assert [f.message for f in mismatches] == [
        "10.0.0.9 is not covered by the certificate's names (mdm.example.com, 192.0.2.7)",
        "other.example.com is not covered by the certificate's names (mdm.example.com, 192.0.2.7)",
    ]
    assert report.hosts == (HOST, "192.0.2.7", "10.0.0.9", "other.example.com")
    assert report.uncovered_hosts == ("10.0.0.9", "other.example.com")
    assert not report.ok


def test_host_and_hosts_together_each_address_once() -> None:
    report = check(full(pki()), host=HOST, hosts=["MDM.example.com.", "10.0.0.9"], now=NOW)
    assert report.hosts == (HOST, "10.0.0.9")
    assert report.host == HOST
    assert report.uncovered_hosts == ("10.0.0.9",)


def test_a_host_is_required(good: Pki) -> None:
    with pytest.raises(InvalidInput, match="no host to check the certificate for"):
        check(full(good), now=NOW)
    with pytest.raises(InvalidInput, match="hosts must be an iterable"):
        check(full(good), hosts=HOST, now=NOW)


def test_ip_written_as_dns_san_does_not_cover_the_ip() -> None:
    report = run(pki(sans=[x509.DNSName("10.0.0.1")]), host="10.0.0.1")
    assert Code.HOST_MISMATCH in report.codes


def test_no_common_name_fallback() -> None:
    report = run(pki(host="mdm.example.com", sans=None), host="mdm.example.com")
    (finding,) = [f for f in report.findings if f.code is Code.HOST_MISMATCH]
    assert "no subject alternative names" in finding.message
    assert "common name" in finding.message


def test_common_name_alone_does_not_cover_when_sans_differ() -> None:
    report = run(pki(host="mdm.example.com", sans=san("www.example.com")), host="mdm.example.com")
    (finding,) = [f for f in report.findings if f.code is Code.HOST_MISMATCH]
    assert finding.message == (
        "mdm.example.com is not covered by the certificate's names (www.example.com)"
    )


@pytest.mark.parametrize("host", ["a.b.example.com", "example.com", "A.B.Example.COM"])
def test_wildcard_mismatch_explains_the_rule(host: str) -> None:
    report = run(pki(sans=san("*.example.com", "mdm.other.org")), host=host)
    message = next(f.message for f in report.findings if f.code is Code.HOST_MISMATCH)
    assert message.endswith("a wildcard covers exactly one label")


@pytest.mark.parametrize("host", ["other.com", "10.0.0.6", "2001:db8::1", "badexample.com"])
def test_the_wildcard_hint_only_where_a_wildcard_was_near(host: str) -> None:
    # *.example.com could never have covered these, so the rule would only mislead.
    report = run(pki(sans=san("*.example.com", "mdm.other.org")), host=host)
    message = next(f.message for f in report.findings if f.code is Code.HOST_MISMATCH)
    assert message == (
        f"{host} is not covered by the certificate's names (*.example.com, mdm.other.org)"
    )


@pytest.mark.parametrize("host", ["", "bad host", "*.example.com", "a..b", "mdm.example.com:443"])
def test_bad_host_is_refused(good: Pki, host: str) -> None:
    with pytest.raises(InvalidInput, match="host"):
        run(good, host=host)


# chain


@pytest.mark.parametrize("order", [(0, 1, 2), (2, 1, 0), (1, 2, 0), (2, 0, 1)])
def test_chain_in_any_order(good: Pki, order: tuple[int, int, int]) -> None:
    certs = [good.leaf, good.intermediate, good.root]
    material = load(*(pem(certs[i]) for i in order))
    report = check(material, host=HOST, now=NOW, key=good.leaf_key)
    assert report.ok
    assert report.chain == (good.leaf, good.intermediate, good.root)


def test_missing_intermediate(good: Pki) -> None:
    material = Material.from_parts([good.leaf, good.root], [good.leaf_key])
    report = check(material, host=HOST, now=NOW)
    (finding,) = [f for f in report.findings if f.code is Code.CHAIN_INCOMPLETE]
    assert finding.severity is Severity.ERROR
    assert "'CN=certflow test intermediate,O=certflow tests'" in finding.message
    assert "was not supplied and is not a public root" in finding.message
    assert report.recommended_mode is ImportMode.DISTRIBUTE_ROOT_FIRST


def test_missing_root(good: Pki) -> None:
    material = Material.from_parts([good.leaf, good.intermediate], [good.leaf_key])
    report = check(material, host=HOST, now=NOW)
    assert codes(report) == {"chain_incomplete", "trust_private"}


def test_intermediate_that_is_not_a_ca_breaks_the_chain() -> None:
    p = pki()
    fake = build(
        "certflow test intermediate", key=p.intermediate_key, issuer=(p.root, p.root_key), ca=False
    )
    material = Material.from_parts([p.leaf, fake, p.root], [p.leaf_key])
    report = check(material, host=HOST, now=NOW)
    (finding,) = [f for f in report.findings if f.code is Code.CHAIN_INCOMPLETE]
    assert "is not acceptable to TLS clients" in finding.message


def test_self_signed_leaf() -> None:
    leaf = build(HOST, key=rsa_key())
    report = check(Material.from_parts([leaf], [rsa_key()]), host=HOST, now=NOW)
    assert codes(report) == {"self_signed", "trust_private"}
    assert report.ok  # a warning: devices can be given the certificate itself as a root
    assert report.recommended_mode is ImportMode.DISTRIBUTE_ROOT_FIRST


# usage and signatures


def test_eku_without_server_auth() -> None:
    report = run(pki(eku=[ExtendedKeyUsageOID.CLIENT_AUTH]))
    (finding,) = [f for f in report.findings if f.code is Code.USAGE]
    assert finding.severity is Severity.WARNING
    assert "clientAuth but not serverAuth" in finding.message
    assert report.ok


def test_no_eku_at_all_is_fine() -> None:
    assert Code.USAGE not in run(pki(eku=None)).codes


def test_key_usage_without_tls_bits() -> None:
    usage = x509.KeyUsage(False, True, False, False, False, False, False, False, False)
    report = run(pki(key_usage=usage))
    assert Code.USAGE in report.codes


@pytest.mark.parametrize(("digest", "label"), [("sha1", "SHA-1"), ("md5", "MD5")])
def test_weak_signature(digest: str, label: str) -> None:
    p = pki()
    weak = resign_weak(p.leaf, p.intermediate_key, digest)
    report = check(
        Material.from_parts([weak, p.intermediate, p.root], [p.leaf_key]), host=HOST, now=NOW
    )
    (finding,) = [f for f in report.findings if f.code is Code.WEAK_SIGNATURE]
    assert finding.severity is Severity.WARNING
    assert f"the certificate is signed with {label}" in finding.message
    assert Code.HOST_MISMATCH not in report.codes  # the host verdict stays honest


@pytest.mark.parametrize(("digest", "label"), [("sha1", "SHA-1"), ("md5", "MD5")])
def test_a_weak_leaf_with_its_whole_chain_gets_an_honest_chain_verdict(
    digest: str, label: str
) -> None:
    p = pki()
    weak = resign_weak(p.leaf, p.intermediate_key, digest)
    material = Material.from_parts([p.root, weak, p.intermediate], [p.leaf_key])
    assert material.chain == (weak, p.intermediate, p.root)  # ordered despite the digest
    report = check(material, host=HOST, now=NOW)
    assert codes(report) == {"chain_incomplete", "weak_signature", "trust_private"}
    (chain,) = [f for f in report.findings if f.code is Code.CHAIN_INCOMPLETE]
    assert chain.message == (
        f"the chain could not be verified because of the weak signature: the certificate is "
        f"signed with {label}, which TLS clients refuse; the certificates themselves lead to "
        "the root: 'mdm.example.com' -> 'certflow test intermediate' -> 'certflow test root'; "
        "ask the CA to reissue with SHA-256"
    )
    assert "not supplied" not in chain.message


def test_a_weak_leaf_with_its_intermediate_never_calls_the_intermediate_missing() -> None:
    p = pki()
    weak = resign_weak(p.leaf, p.intermediate_key, "sha1")
    report = check(Material.from_parts([weak, p.intermediate], [p.leaf_key]), host=HOST, now=NOW)
    (chain,) = [f for f in report.findings if f.code is Code.CHAIN_INCOMPLETE]
    assert chain.message.startswith(
        "the chain could not be verified because of the weak signature: the certificate is "
        "signed with SHA-1"
    )
    # What is missing is the root, and the verdict says so: the intermediate was supplied.
    assert (
        "besides, 'CN=certflow test root,O=certflow tests', which issued 'certflow test "
        "intermediate', was not supplied" in chain.message
    )


def test_weak_signature_on_intermediate() -> None:
    p = pki()
    weak = resign_weak(p.intermediate, p.root_key, "sha1")
    report = check(Material.from_parts([p.leaf, weak, p.root], [p.leaf_key]), host=HOST, now=NOW)
    messages = [f.message for f in report.findings if f.code is Code.WEAK_SIGNATURE]
    assert messages == [
        "intermediate 'certflow test intermediate' is signed with SHA-1, which clients no longer "
        "accept; ask the CA for a SHA-256 signature"
    ]
    (chain,) = [f for f in report.findings if f.code is Code.CHAIN_INCOMPLETE]
    assert "because of the weak signature: intermediate 'certflow test intermediate'" in (
        chain.message
    )


def test_weak_signatures_of_real_files() -> None:
    from .test_load import vector

    pss_sha1 = load(vector("x509/ee-pss-sha1-cert.pem"))
    assert pss_sha1.leaf is not None
    report = check(pss_sha1, host="example.com", now=pss_sha1.leaf.not_valid_before_utc)
    assert "signed with SHA-1" in next(
        f.message for f in report.findings if f.code is Code.WEAK_SIGNATURE
    )


# trust: public (certifi) vs private


@pytest.mark.filterwarnings("ignore:Parsed a serial number")  # a few public roots have serial 0
def test_public_root_store_is_certifi() -> None:
    with open(certifi.where(), "rb") as bundle:
        public = x509.load_pem_x509_certificates(bundle.read())
    assert all(is_public_root(cert) for cert in public)
    assert not is_public_root(pki().root)


def test_publicly_trusted_root_recommends_proceeding(good: Pki) -> None:
    # Nobody can issue under a real public root in a test, so the test root plays one.
    roots = PublicRoots.of([good.root])
    material = Material.from_parts([good.leaf, good.intermediate], [good.leaf_key])  # no root
    report = check(material, host=HOST, now=NOW, roots=roots)
    assert report.ok
    assert codes(report) == {"trust_public"}
    assert report.root_publicly_trusted
    assert report.recommended_mode is ImportMode.PROCEED_TO_IMPORT
    assert report.chain == (good.leaf, good.intermediate, good.root)


def test_report_as_json_data(good: Pki) -> None:
    data = run(good).to_dict()
    assert data["ok"] is True
    assert data["recommended_mode"] == "distribute_root_first"
    assert data["findings"] == [
        {
            "code": "trust_private",
            "severity": "info",
            "message": run(good).findings[0].message,
            "host": None,
        }
    ]
    assert (data["host"], data["hosts"], data["uncovered_hosts"]) == (HOST, [HOST], [])
    assert data["checked_at"] == NOW.isoformat()


def test_vector_real_world_certificate_is_judged_on_every_rule() -> None:
    from .test_load import vector

    material = load(vector("x509/cryptography.io.chain.pem"))
    assert material.leaf is not None
    inside = material.leaf.not_valid_before_utc + DAY
    report = check(material, host="www.cryptography.io", now=inside)
    assert {"validity_period", "no_private_key"} <= codes(report)  # a 4-year certificate
    assert Code.HOST_MISMATCH not in report.codes
    wrong = check(material, host="cryptography.org", now=inside)
    assert Code.HOST_MISMATCH in wrong.codes


@pytest.mark.filterwarnings("error")  # odd real-world files: no warning escapes
@pytest.mark.parametrize("folder", ["x509", "x509/custom", "pkcs12"])
def test_every_vector_file_loads_or_is_refused_cleanly(folder: str) -> None:
    """Hundreds of real and deliberately odd files: a MaterialError or a report, nothing else."""
    from pathlib import Path

    import cryptography_vectors

    from certflow.certs import MaterialError

    base = Path(cryptography_vectors.__file__).parent / folder
    outcomes = {"report": 0, "refused": 0}
    refusals: list[str] = []
    for path in sorted(p for p in base.iterdir() if p.is_file()):
        try:
            material = load(path)
        except MaterialError as error:
            refusals.append(f"{error.source == str(path)}|{error}")
            outcomes["refused"] += 1
            continue
        if material.leaf is not None:
            report = check(material, host="example.com", now=NOW)
            assert all(f.message for f in report.findings)
        outcomes["report"] += 1
    assert outcomes["report"] > 0
    assert [r for r in refusals if not r.startswith(f"True|{base}")] == []  # each names its file


def test_vector_csrs_are_refused_as_not_certificates() -> None:
    from pathlib import Path

    import cryptography_vectors

    from certflow.certs import MaterialError

    codes: list[str] = []
    for path in sorted((Path(cryptography_vectors.__file__).parent / "x509/requests").iterdir()):
        try:
            load(path)
        except MaterialError as error:
            codes.append(error.code)
    assert len(codes) == len(
        list((Path(cryptography_vectors.__file__).parent / "x509/requests").iterdir())
    )
    assert codes.count("unsupported") > len(codes) // 2
