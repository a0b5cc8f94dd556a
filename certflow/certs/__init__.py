"""Certificate tools: RSA keys and CSRs, loading uploaded material, server-certificate checks.

Typical use::

    material = certs.load("server.pfx", password="...")
    report = certs.check(material, host="mdm.example.com", now=datetime.now(UTC))
    if not report.ok:
        for finding in report.errors:
            print(finding.code, finding.message)
"""

from __future__ import annotations

from certflow.certs._chain import PublicRoots, is_public_root
from certflow.certs._check import (
    EXPIRY_WARNING,
    MAX_VALIDITY,
    MIN_RSA_BITS,
    Code,
    Finding,
    ImportMode,
    Report,
    Severity,
    check,
    parse_host,
)
from certflow.certs._csr import (
    CSR_FILE,
    KEY_FILE,
    CsrInfo,
    WrittenFiles,
    create_csr,
    csr_to_pem,
    inspect_csr,
    openssl_config,
    read_csr,
    write_key_and_csr,
)
from certflow.certs._errors import MaterialError, MaterialErrorCode, SubjectError
from certflow.certs._export import (
    CHAIN_PEM,
    FULLCHAIN_PEM,
    ROOT_CER,
    ROOT_PEM,
    SERVER_CRT,
    SERVER_PFX,
    Exported,
    ExportedFile,
    export,
)
from certflow.certs._files import (
    LIMIT,
    PASSWORD_LIMIT,
    atomic_write,
    backup,
    backup_together,
    check_target,
    read_bounded,
    read_password,
)
from certflow.certs._keys import (
    KEY_SIZES,
    KeySize,
    decrypt_key,
    encrypt_key,
    generate_key,
    key_to_pem,
    load_key,
)
from certflow.certs._load import Material, Source, key_matches, load
from certflow.certs._names import (
    describe_key,
    key_kind,
    signature_algorithm_name,
    usage_name,
    weak_digest,
)
from certflow.certs._rollout import (
    CertificateRejected,
    identity_of,
    material_of,
    rollout_for,
    root_publicly_trusted,
)
from certflow.certs._subject import (
    SanEntry,
    Subject,
    normalize_country,
    parse_san,
    parse_sans,
    sans_from_extension,
)

__all__ = [
    "CHAIN_PEM",
    "CSR_FILE",
    "EXPIRY_WARNING",
    "FULLCHAIN_PEM",
    "KEY_FILE",
    "KEY_SIZES",
    "LIMIT",
    "MAX_VALIDITY",
    "MIN_RSA_BITS",
    "PASSWORD_LIMIT",
    "ROOT_CER",
    "ROOT_PEM",
    "SERVER_CRT",
    "SERVER_PFX",
    "CertificateRejected",
    "Code",
    "CsrInfo",
    "Exported",
    "ExportedFile",
    "Finding",
    "ImportMode",
    "KeySize",
    "Material",
    "MaterialError",
    "MaterialErrorCode",
    "PublicRoots",
    "Report",
    "SanEntry",
    "Severity",
    "Source",
    "Subject",
    "SubjectError",
    "WrittenFiles",
    "atomic_write",
    "backup",
    "backup_together",
    "check",
    "check_target",
    "create_csr",
    "csr_to_pem",
    "decrypt_key",
    "describe_key",
    "encrypt_key",
    "export",
    "generate_key",
    "identity_of",
    "inspect_csr",
    "is_public_root",
    "key_kind",
    "key_matches",
    "key_to_pem",
    "load",
    "load_key",
    "material_of",
    "normalize_country",
    "openssl_config",
    "parse_host",
    "parse_san",
    "parse_sans",
    "read_bounded",
    "read_csr",
    "read_password",
    "rollout_for",
    "root_publicly_trusted",
    "sans_from_extension",
    "signature_algorithm_name",
    "usage_name",
    "weak_digest",
    "write_key_and_csr",
]
