"""Loading uploads: every format detected from content, merged, ordered; every failure coded."""

from __future__ import annotations

import random
import subprocess
import warnings
from collections.abc import Callable
from pathlib import Path

import cryptography_vectors
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.serialization import pkcs7, pkcs12
from hypothesis import given, settings
from hypothesis import strategies as st

from certflow.certs import LIMIT, Material, MaterialError, Subject, create_csr, csr_to_pem, load

from .factory import Pki, build, key_pem, pem, pki, rsa_key

ENC = serialization.Encoding
FMT = serialization.PrivateFormat


def vector(path: str) -> bytes:
    """A file of the cryptography-vectors package."""
    with cryptography_vectors.open_vector_file(path, "rb") as handle:
        data: bytes = handle.read()
    return data


def _private(
    key_format: serialization.PrivateFormat,
    encoding: serialization.Encoding,
    password: bytes | None,
) -> Callable[[Pki], bytes]:
    def render(p: Pki) -> bytes:
        encryption: serialization.KeySerializationEncryption = (
            serialization.NoEncryption()
            if password is None
            else serialization.BestAvailableEncryption(password)
        )
        return p.leaf_key.private_bytes(encoding, key_format, encryption)

    return render


def _pfx(password: bytes | None, legacy: bool = False) -> Callable[[Pki], bytes]:
    def render(p: Pki) -> bytes:
        encryption: serialization.KeySerializationEncryption
        if password is None:
            encryption = serialization.NoEncryption()
        elif legacy:  # what older Windows and Java tools write
            encryption = (
                FMT.PKCS12.encryption_builder()
                .key_cert_algorithm(pkcs12.PBES.PBESv1SHA1And3KeyTripleDESCBC)
                .hmac_hash(hashes.SHA1())
                .build(password)
            )
        else:
            encryption = serialization.BestAvailableEncryption(password)
        return pkcs12.serialize_key_and_certificates(
            b"server",
            p.leaf_key,  # type: ignore[arg-type]
            p.leaf,
            [p.intermediate, p.root],
            encryption,
        )

    return render


# name -> (render, password, expects certificates, expects key)
FORMATS: dict[str, tuple[Callable[[Pki], bytes], bytes | None, bool, bool]] = {
    "pem certificate": (lambda p: pem(p.leaf), None, True, False),
    "pem with crlf": (lambda p: pem(p.leaf).replace(b"\n", b"\r\n"), None, True, False),
    "pem with bag attributes": (
        lambda p: (
            b"Bag Attributes\n    localKeyID: 01 00 00 00 \nsubject=/CN=mdm\nissuer=/CN=x\n"
            + pem(p.leaf)
            + b"Bag Attributes: <No Attributes>\n"
            + key_pem(p.leaf_key)
        ),
        None,
        True,
        True,
    ),
    "der certificate": (lambda p: p.leaf.public_bytes(ENC.DER), None, True, False),
    "pkcs7 pem chain": (
        lambda p: pkcs7.serialize_certificates([p.root, p.leaf, p.intermediate], ENC.PEM),
        None,
        True,
        False,
    ),
    "pkcs7 der chain": (
        lambda p: pkcs7.serialize_certificates([p.intermediate, p.leaf], ENC.DER),
        None,
        True,
        False,
    ),
    "pfx without password": (_pfx(None), None, True, True),
    "pfx aes": (_pfx(b"pfx-pass"), b"pfx-pass", True, True),
    "pfx legacy 3des": (_pfx(b"pfx-pass", legacy=True), b"pfx-pass", True, True),
    "pkcs1 pem key": (_private(FMT.TraditionalOpenSSL, ENC.PEM, None), None, False, True),
    "pkcs1 der key": (_private(FMT.TraditionalOpenSSL, ENC.DER, None), None, False, True),
    "pkcs8 pem key": (_private(FMT.PKCS8, ENC.PEM, None), None, False, True),
    "pkcs8 der key": (_private(FMT.PKCS8, ENC.DER, None), None, False, True),
    "encrypted pkcs8 pem key": (_private(FMT.PKCS8, ENC.PEM, b"k"), b"k", False, True),
    "encrypted pkcs8 der key": (_private(FMT.PKCS8, ENC.DER, b"k"), b"k", False, True),
    "encrypted pkcs1 pem key": (_private(FMT.TraditionalOpenSSL, ENC.PEM, b"k"), b"k", False, True),
}
ENCRYPTED = [name for name, (_, password, _, _) in FORMATS.items() if password is not None]


@pytest.mark.parametrize("fmt", list(FORMATS))
def test_every_format_is_detected_from_content(fmt: str, good: Pki, tmp_path: Path) -> None:
    render, password, has_certs, has_key = FORMATS[fmt]
    path = tmp_path / "upload.bin"  # the name says nothing about the format
    path.write_bytes(render(good))
    material = load(path, password=password)
    assert (material.leaf == good.leaf) is has_certs
    assert (material.private_key is not None) is has_key
    if has_key:
        assert material.private_key is not None
        assert material.private_key.public_key() == good.leaf_key.public_key()
    assert material.sources == (str(path),)


@pytest.mark.parametrize("fmt", ENCRYPTED)
@pytest.mark.parametrize(
    ("password", "code"),
    [(None, "password_required"), ("", "password_required"), ("wrong", "bad_password")],
)
def test_wrong_empty_and_missing_passwords(
    fmt: str, password: str | None, code: str, good: Pki
) -> None:
    with pytest.raises(MaterialError) as caught:
        load(FORMATS[fmt][0](good), password=password, names=["server.pfx"])
    assert caught.value.code == code
    assert str(caught.value).startswith("server.pfx: ")
    assert "password" in str(caught.value)


def test_password_meant_for_another_file_is_harmless(good: Pki) -> None:
    material = load(pem(good.leaf), _pfx(None)(good), password="for-some-other-file")
    assert material.private_key is not None


def test_str_password_works(good: Pki) -> None:
    assert load(_pfx(b"p\xc3\xa4ss")(good), password="päss").leaf == good.leaf


GARBAGE: dict[str, tuple[Callable[[Pki], bytes], str]] = {
    "empty": (lambda p: b"", "empty"),
    "blank": (lambda p: b" \r\n\t\n", "empty"),
    "random bytes": (lambda p: random.Random(3).randbytes(3000), "unparseable"),
    "text": (lambda p: b"hello, this is not a certificate\n", "unparseable"),
    "truncated pem": (lambda p: pem(p.leaf)[:500], "unparseable"),
    "truncated pem chain": (lambda p: pem(p.leaf, p.root)[:-300], "unparseable"),
    "truncated der": (lambda p: p.leaf.public_bytes(ENC.DER)[:-40], "unparseable"),
    "truncated pfx": (lambda p: _pfx(None)(p)[:-100], "unparseable"),
    "damaged base64": (
        lambda p: pem(p.leaf).replace(b"\n", b"\n!!", 3),
        "unparseable",
    ),
    "der with junk inside": (
        lambda p: b"\x30\x82\x01\x00" + bytes(256),
        "unparseable",
    ),
    "pem csr": (
        lambda p: csr_to_pem(
            create_csr(
                Subject.create(
                    country="DE",
                    state="s",
                    locality="l",
                    organization="o",
                    common_name="a.example.com",
                ),
                rsa_key(),
            )
        ),
        "unsupported",
    ),
    "der csr": (
        lambda p: create_csr(
            Subject.create(
                country="DE", state="s", locality="l", organization="o", common_name="a.example.com"
            ),
            rsa_key(),
        ).public_bytes(ENC.DER),
        "unsupported",
    ),
    "public key": (
        lambda p: p.leaf.public_key().public_bytes(
            ENC.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        ),
        "unsupported",
    ),
    "unknown pem label": (
        lambda p: b"-----BEGIN FOO-----\nAAAA\n-----END FOO-----\n",
        "unsupported",
    ),
    "oversized": (lambda p: b"A" * (LIMIT + 1), "too_large"),
}


@pytest.mark.parametrize("kind", list(GARBAGE))
def test_garbage_is_refused_with_a_code_naming_the_file(
    kind: str, good: Pki, tmp_path: Path
) -> None:
    render, code = GARBAGE[kind]
    path = tmp_path / "upload.crt"
    path.write_bytes(render(good))
    with pytest.raises(MaterialError) as caught:
        load(path)
    assert caught.value.code == code
    assert caught.value.source == str(path)
    assert str(caught.value).startswith(f"{path}: ")


def test_limit_is_exact(good: Pki) -> None:
    padded = pem(good.leaf) + b"\n" * (LIMIT - len(pem(good.leaf)))
    assert len(padded) == LIMIT
    assert load(padded).leaf == good.leaf


def test_five_megabytes_of_junk_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "junk.pfx"
    path.write_bytes(random.Random(5).randbytes(5 * 1024 * 1024))
    with pytest.raises(MaterialError) as caught:
        load(path)
    assert caught.value.code == "too_large"


def test_reading_stops_at_the_limit() -> None:
    # /dev/zero never ends: only a bounded read (LIMIT + 1 bytes) can return at all.
    with pytest.raises(MaterialError) as caught:
        load("/dev/zero")
    assert caught.value.code == "too_large"


def test_oversized_bytes_are_refused() -> None:
    with pytest.raises(MaterialError) as caught:
        load(bytes(LIMIT + 1))
    assert (caught.value.code, caught.value.source) == ("too_large", "input 1")


@pytest.mark.parametrize(
    ("make", "problem"),
    [(lambda p: p / "missing.pem", "no such file"), (lambda p: p, "is a folder")],
)
def test_unreadable_paths(make: Callable[[Path], Path], problem: str, tmp_path: Path) -> None:
    with pytest.raises(MaterialError, match=problem) as caught:
        load(make(tmp_path))
    assert caught.value.code == "unreadable"


def test_nothing_to_load() -> None:
    with pytest.raises(MaterialError) as caught:
        load()
    assert caught.value.code == "empty"


def test_byte_sources_are_named_by_position(good: Pki) -> None:
    with pytest.raises(MaterialError, match=r"^input 2: the file is empty"):
        load(pem(good.leaf), b"")


SHARED = pki()  # one PKI for every example; loading an RSA key (validated) takes ~70 ms


@settings(max_examples=20, deadline=None)
@given(order=st.permutations(["leaf", "intermediate", "root", "key"]), one_file=st.booleans())
def test_leaf_intermediates_and_root_are_ordered_whatever_the_input_order(
    order: list[str], one_file: bool
) -> None:
    p = SHARED
    parts = {
        "leaf": pem(p.leaf),
        "intermediate": pem(p.intermediate),
        "root": pem(p.root),
        "key": key_pem(p.leaf_key),
    }
    sources = [b"".join(parts[name] for name in order)] if one_file else [parts[n] for n in order]
    material = load(*sources)
    assert material.chain == (p.leaf, p.intermediate, p.root)
    assert (material.leaf, material.intermediates, material.root) == (
        p.leaf,
        (p.intermediate,),
        p.root,
    )
    assert material.others == ()
    assert material.private_key is not None


def test_longer_chain_in_reverse_order() -> None:
    p = pki()
    k3 = rsa_key(2048, 5)
    second = build(
        "second intermediate", key=k3, issuer=(p.intermediate, p.intermediate_key), ca=True
    )
    leaf = build("deep.example.com", key=rsa_key(), issuer=(second, k3))
    material = load(pem(p.root, p.intermediate, second, leaf))
    assert material.chain == (leaf, second, p.intermediate, p.root)


def test_leaf_is_found_by_its_key_even_among_unrelated_certificates() -> None:
    p = pki()
    stranger = build("stranger.example.com", key=rsa_key(2048, 6))
    material = load(pem(stranger), pem(p.leaf, p.intermediate), key_pem(p.leaf_key))
    assert material.leaf == p.leaf
    assert material.others == (stranger,)
    assert material.root is None


def test_the_matching_key_is_chosen_among_several() -> None:
    p = pki()
    material = load(key_pem(rsa_key(2048, 6)), pem(p.leaf), key_pem(p.leaf_key))
    assert material.private_key is not None
    assert material.private_key.public_key() == p.leaf_key.public_key()


def test_duplicates_are_merged() -> None:
    p = pki()
    assert load(pem(p.leaf, p.leaf), pem(p.leaf)).certificates == (p.leaf,)


def test_only_ca_certificates_means_no_leaf() -> None:
    p = pki()
    material = load(pem(p.root, p.intermediate))
    assert material.leaf is None
    assert (material.intermediates, material.root) == ((p.intermediate,), p.root)


def test_only_a_key() -> None:
    material = load(key_pem(rsa_key()))
    assert (material.leaf, material.certificates) == (None, ())
    assert material.private_key is not None


def test_material_from_objects_and_with_a_key() -> None:
    p = pki()
    material = Material.of(p.root, p.leaf, p.intermediate, key=None)
    assert material.chain == (p.leaf, p.intermediate, p.root)
    assert material.private_key is None
    assert material.with_private_key(p.leaf_key).private_key is p.leaf_key


# Real-world files from the cryptography-vectors package.


@pytest.mark.parametrize(
    ("path", "password"),
    [
        ("pkcs12/cert-key-aes256cbc.p12", "cryptography"),
        ("pkcs12/cert-rc2-key-3des.p12", "cryptography"),  # legacy RC2 + 3DES
        ("pkcs12/cert-none-key-none.p12", "cryptography"),
        ("pkcs12/no-password.p12", None),
        ("pkcs12/name-2-3-no-pwd.p12", None),
    ],
)
def test_vector_pfx_files(path: str, password: str | None) -> None:
    material = load(vector(path), password=password, names=[path])
    assert material.leaf is not None
    assert material.leaf.subject.rfc4514_string() == "CN=cryptography CA,C=US"
    assert material.private_key is not None


@pytest.mark.parametrize("path", ["pkcs12/cert-key-aes256cbc.p12", "pkcs12/cert-rc2-key-3des.p12"])
def test_vector_pfx_wrong_and_missing_password(path: str) -> None:
    for password, code in ((None, "password_required"), ("nope", "bad_password")):
        with pytest.raises(MaterialError) as caught:
            load(vector(path), password=password, names=[path])
        assert caught.value.code == code


def test_vector_java_truststore_has_only_ca_certificates() -> None:
    material = load(vector("pkcs12/java-truststore.p12"))
    assert material.leaf is None
    assert material.private_key is None
    assert len(material.certificates) == 2


def test_vector_pfx_with_key_only() -> None:
    material = load(vector("pkcs12/no-cert-key-aes256cbc.p12"), password="cryptography")
    assert material.leaf is None
    assert material.private_key is not None


def test_vector_real_chain_in_any_order() -> None:
    data = vector("x509/cryptography.io.chain.pem")
    leaf, intermediate = x509.load_pem_x509_certificates(data)
    assert load(data).chain == (leaf, intermediate)
    assert load(pem(intermediate), pem(leaf)).chain == (leaf, intermediate)
    assert "cryptography.io" in leaf.subject.rfc4514_string()


def test_vector_der_certificate() -> None:
    material = load(vector("x509/e-trust.ru.der"))
    assert material.leaf is not None
    assert material.leaf.subject.rfc4514_string().endswith(
        "C=RU,1.2.840.113549.1.9.1=dit@minsvyaz.ru"
    )


def test_vector_encrypted_legacy_key_needs_its_password() -> None:
    with pytest.raises(
        MaterialError, match=r"PEM block 2 \(RSA PRIVATE KEY\): the private key is encrypted"
    ) as caught:
        load(vector("x509/cryptography.io.with_headers.pem"))
    assert caught.value.code == "password_required"


def test_vector_damaged_key_block_is_named() -> None:
    with pytest.raises(
        MaterialError, match=r"PEM block 1 \(PRIVATE KEY\): the private key is damaged"
    ) as caught:
        load(vector("x509/cryptography.io.with_garbage.pem"))
    assert caught.value.code == "unparseable"


# cryptography parses, certflow does not second-guess it; no warning reaches the caller.


def test_vector_ber_pkcs7_loads() -> None:
    material = load(vector("pkcs7/amazon-roots.p7b"))  # BER, indefinite lengths
    assert len(material.certificates) == 2
    assert all("Amazon" in c.subject.rfc4514_string() for c in material.certificates)


def _crl2pkcs7(openssl: str, folder: Path, p: Pki, outform: str) -> bytes:
    (folder / "chain.pem").write_bytes(pem(p.leaf, p.intermediate, p.root))
    done = subprocess.run(
        [openssl, "crl2pkcs7", "-nocrl", "-certfile", "chain.pem", "-outform", outform],
        cwd=folder,
        check=True,
        capture_output=True,
    )
    return done.stdout


@pytest.mark.parametrize("outform", ["PEM", "DER"])
def test_an_openssl_crl2pkcs7_bundle_loads_without_a_warning(
    outform: str, openssl: str, tmp_path: Path
) -> None:
    p = SHARED
    bundle = _crl2pkcs7(openssl, tmp_path, p, outform)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        material = load(bundle)
    assert caught == []
    assert material.chain == (p.leaf, p.intermediate, p.root)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # what `python -W error` does
        assert load(bundle).chain == material.chain


def _cryptography_reads(data: bytes) -> bool:
    """True when one of cryptography's own loaders reads ``data`` with every name and
    extension of its certificates (what the checks read), without a password."""

    def p12(d: bytes) -> list[object]:
        bundle = pkcs12.load_pkcs12(d, None)
        certs = [] if bundle.cert is None else [bundle.cert.certificate]
        return [*certs, *(c.certificate for c in bundle.additional_certs), bundle.key]

    loaders: list[Callable[[bytes], list[object]]] = [
        lambda d: list(x509.load_pem_x509_certificates(d)),
        lambda d: [x509.load_der_x509_certificate(d)],
        lambda d: list(pkcs7.load_pem_pkcs7_certificates(d)),
        lambda d: list(pkcs7.load_der_pkcs7_certificates(d)),
        p12,
        lambda d: [serialization.load_pem_private_key(d, None)],
        lambda d: [serialization.load_der_private_key(d, None)],
    ]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for loader in loaders:
            try:
                found = [item for item in loader(data) if item is not None]
                for cert in found:
                    if isinstance(cert, x509.Certificate):
                        cert.subject.rfc4514_string()
                        cert.issuer.rfc4514_string()
                        cert.extensions  # noqa: B018 - parsing is the point
            except Exception:
                continue
            if found:
                return True
    return False


# Files cryptography's certificate loader reads, but which also hold a key that cryptography
# itself refuses: the upload is refused, naming the key block.
KEY_BLOCK_REFUSALS = {
    "x509/cryptography.io.chain_with_garbage.pem": "unparseable",
    "x509/cryptography.io.with_garbage.pem": "unparseable",
    "x509/cryptography.io.with_headers.pem": "password_required",
}


def test_whatever_cryptography_reads_loads(tmp_path: Path) -> None:
    """Every vector file that cryptography's loaders read loads, also under ``-W error``."""
    base = Path(cryptography_vectors.__file__).parent
    folders = ["x509", "pkcs7", "pkcs12", "asymmetric/PKCS8", "asymmetric/DER_Serialization",
               "asymmetric/PEM_Serialization", "asymmetric/Traditional_OpenSSL_Serialization"]  # fmt: skip
    read = 0
    refusals: dict[str, str] = {}
    for folder in folders:
        for path in sorted(p for p in (base / folder).rglob("*") if p.is_file()):
            data = path.read_bytes()
            if len(data) > LIMIT or not _cryptography_reads(data):
                continue
            read += 1
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("error")
                    load(data)
            except MaterialError as error:
                refusals[str(path.relative_to(base))] = error.code
    assert refusals == KEY_BLOCK_REFUSALS
    assert read > 500  # 557 files of cryptography-vectors 50
