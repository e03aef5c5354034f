"""The one redaction path: realistic secret shapes go, ordinary evidence stays, idempotently."""

from __future__ import annotations

import base64
import copy
import json
import random
import textwrap
from collections import namedtuple
from itertools import pairwise

import pytest

from railiance_ledger.domain.redaction import (
    KINDS,
    MARKER_RE,
    Finding,
    contains_secret,
    find_secrets,
    is_secret_key,
    looks_like_secret_value,
    marker,
    redact,
    redact_value,
)

# --------------------------------------------------------------------------------------------------
# Realistic but fake material, generated deterministically (no real keys anywhere)
# --------------------------------------------------------------------------------------------------

_RNG = random.Random(20240501)
_ALNUM = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"


def _rand(n: int, alphabet: str = _ALNUM) -> str:
    return "".join(_RNG.choice(alphabet) for _ in range(n))


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


def _b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _pem(label: str, der_prefix: bytes, size: int) -> str:
    body = _b64(der_prefix + _RNG.randbytes(size))
    lines = "\n".join(body[i : i + 64] for i in range(0, len(body), 64))
    return f"-----BEGIN {label}-----\n{lines}\n-----END {label}-----"


RSA_KEY = _pem("RSA PRIVATE KEY", bytes.fromhex("308204a30201000282010100"), 1180)
EC_KEY = _pem("EC PRIVATE KEY", bytes.fromhex("30770201010420"), 100)
OPENSSH_KEY = _pem("OPENSSH PRIVATE KEY", b"openssh-key-v1\x00\x00\x00\x00\x04none", 380)
PKCS8_KEY = _pem("PRIVATE KEY", bytes.fromhex("308204be020100300d06092a864886f70d0101010500"), 1200)
CERTIFICATE = _pem("CERTIFICATE", bytes.fromhex("308203"), 700)

JWT = ".".join(
    [
        _b64url(json.dumps({"alg": "RS256", "kid": "k1", "typ": "JWT"}).encode()),
        _b64url(
            json.dumps({"iss": "https://kubernetes.default.svc", "sub": "system:serviceaccount:x"}).encode()
        ),
        _b64url(_RNG.randbytes(256)),
    ]
)
OPAQUE_BEARER = _rand(43, _ALNUM + "-_")
AWS_ACCESS_KEY_ID = "AKIA" + _rand(16, "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567")
AWS_SECRET = _rand(40, _ALNUM + "/+")
GHP = "ghp_" + _rand(36)
GHO = "gho_" + _rand(36)
GITHUB_PAT = "github_pat_11" + _rand(20) + "_" + _rand(59)
GLPAT = "glpat-" + _rand(20, _ALNUM + "-_")
SLACK = "xoxb-" + _rand(12, "0123456789") + "-" + _rand(13, "0123456789") + "-" + _rand(24)
NPM = "npm_" + _rand(36)
PYPI = "pypi-AgEIcHlwaS5vcmcCJD" + _rand(120, _ALNUM + "-_")
GOOGLE = "AIza" + _rand(35, _ALNUM + "-_")
OPENBAO = "hvs." + _rand(90, _ALNUM + "-_")
FORGEJO = _rand(40, "0123456789abcdef")
DOCKER_AUTH = _b64(b"robot$ci:" + _rand(32).encode())
CLIENT_KEY_DATA = _b64(RSA_KEY.encode() + b"\n")
CLIENT_CERT_DATA = _b64(CERTIFICATE.encode() + b"\n")
CA_DATA = _b64(_pem("CERTIFICATE", bytes.fromhex("308201"), 500).encode())
SA_TOKEN = JWT

KUBECONFIG = f"""\
apiVersion: v1
kind: Config
clusters:
- cluster:
    certificate-authority-data: {CA_DATA}
    server: https://127.0.0.1:6443
  name: k3d-railiance
contexts:
- context:
    cluster: k3d-railiance
    user: admin@k3d-railiance
  name: k3d-railiance
current-context: k3d-railiance
preferences: {{}}
users:
- name: admin@k3d-railiance
  user:
    client-certificate-data: {CLIENT_CERT_DATA}
    client-key-data: {CLIENT_KEY_DATA}
- name: deployer
  user:
    token: {SA_TOKEN}
"""


def _only_marker_kinds(text: str) -> set[str]:
    return {m.group(0)[len("[REDACTED:") : -1] for m in MARKER_RE.finditer(text)}


# (name, text, the secret substrings, the marker kind expected)
SAMPLES: list[tuple[str, str, list[str], str]] = [
    ("pem-rsa", f"key material:\n{RSA_KEY}\ndone", [RSA_KEY.splitlines()[3]], "pem-private-key"),
    ("pem-ec", f"{EC_KEY}\n", [EC_KEY.splitlines()[1]], "pem-private-key"),
    ("pem-openssh", f"id_ed25519:\n{OPENSSH_KEY}", [OPENSSH_KEY.splitlines()[2]], "pem-private-key"),
    ("pem-pkcs8", PKCS8_KEY, [PKCS8_KEY.splitlines()[5]], "pem-private-key"),
    ("jwt", f"service account token {JWT} issued", [JWT], "jwt"),
    ("bearer", f"Authorization: Bearer {OPAQUE_BEARER}", [OPAQUE_BEARER], "bearer-token"),
    ("basic", "Authorization: Basic dXNlcjpwYXNz", ["dXNlcjpwYXNz"], "basic-auth"),
    ("aws-access", f"aws_access_key_id = {AWS_ACCESS_KEY_ID}", [AWS_ACCESS_KEY_ID], "aws-access-key"),
    ("aws-secret", f"aws_secret_access_key = {AWS_SECRET}", [AWS_SECRET], "aws-secret-key"),
    ("ghp", f"cloning with {GHP}", [GHP], "github-token"),
    ("gho", f"oauth {GHO} ok", [GHO], "github-token"),
    ("github-pat", f"GH_PAT={GITHUB_PAT}", [GITHUB_PAT], "github-token"),
    ("gitlab", f"token {GLPAT} rejected", [GLPAT], "gitlab-token"),
    ("slack", f"posting with {SLACK}", [SLACK], "slack-token"),
    ("npm", f"//registry.npmjs.org/:_authToken={NPM}", [NPM], "npm-token"),
    ("pypi", f"password = {PYPI}", [PYPI], "pypi-token"),
    ("google", f"maps key {GOOGLE}", [GOOGLE], "google-api-key"),
    ("openbao", f"X-Vault-Token: {OPENBAO}", [OPENBAO], "openbao-token"),
    ("forgejo-header", f"Authorization: token {FORGEJO}", [FORGEJO], "forgejo-token"),
    ("forgejo-env", f"FORGEJO_TOKEN={FORGEJO}", [FORGEJO], "forgejo-token"),
    ("kubeconfig", KUBECONFIG, [CLIENT_KEY_DATA, CLIENT_CERT_DATA, SA_TOKEN], "kubeconfig"),
    ("url-postgres", "postgresql://user:s3cret@db:5432/app", ["user:s3cret"], "url-credentials"),
    ("url-https", "https://user:pass@host/x", ["user:pass"], "url-credentials"),
    (
        "docker-config",
        json.dumps({"auths": {"registry.example.com": {"auth": DOCKER_AUTH}}}),
        [DOCKER_AUTH],
        "docker-auth",
    ),
    ("env-password", "DATABASE_PASSWORD=hunter2hunter2", ["hunter2hunter2"], "env-secret"),
    ("env-token", "API_TOKEN=tok_4f9a8b7c6d5e", ["tok_4f9a8b7c6d5e"], "env-secret"),
    (
        "env-export",
        'export SECRET_KEY="django-insecure-9s8d7f6g"',
        ["django-insecure-9s8d7f6g"],
        "env-secret",
    ),
]


# --------------------------------------------------------------------------------------------------
# Every shape: the secret is gone and the marker names what was removed
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "text", "secrets", "kind"), SAMPLES, ids=[s[0] for s in SAMPLES])
def test_every_secret_shape_is_removed_and_marked_with_its_kind(
    name: str, text: str, secrets: list[str], kind: str
) -> None:
    out = redact(text)
    for secret in secrets:
        assert secret not in out
    assert marker(kind) in out
    assert _only_marker_kinds(out) <= set(KINDS)


@pytest.mark.parametrize(
    "key", [RSA_KEY, EC_KEY, OPENSSH_KEY, PKCS8_KEY], ids=["rsa", "ec", "openssh", "pkcs8"]
)
def test_pem_private_key_block_is_replaced_whole_and_context_kept(key: str) -> None:
    text = f"tls.key follows\n{key}\nend of bundle"
    assert redact(text) == "tls.key follows\n[REDACTED:pem-private-key]\nend of bundle"


def test_pem_private_key_inside_json_string_with_escaped_newlines_is_removed() -> None:
    doc = json.dumps({"type": "service_account", "private_key": PKCS8_KEY + "\n", "client_email": "ci@x.iam"})
    out = redact(doc)
    assert json.loads(out) == {
        "type": "service_account",
        "private_key": "[REDACTED:pem-private-key]",
        "client_email": "ci@x.iam",
    }


def test_truncated_pem_private_key_without_end_line_is_still_removed() -> None:
    lines = RSA_KEY.splitlines()[:6]
    out = redact("log excerpt: " + "\n".join(lines))
    assert out == "log excerpt: [REDACTED:pem-private-key]"


def test_base64_encoded_private_key_in_a_secret_manifest_is_removed() -> None:
    text = f"data:\n  tls.key: {CLIENT_KEY_DATA}\n  tls.crt: {CLIENT_CERT_DATA}\n"
    assert redact(text) == f"data:\n  tls.key: [REDACTED:pem-private-key]\n  tls.crt: {CLIENT_CERT_DATA}\n"


def test_certificate_is_public_and_survives() -> None:
    text = f"ca bundle:\n{CERTIFICATE}\n"
    assert redact(text) == text


def test_jwt_is_replaced_and_sentence_kept() -> None:
    assert redact(f"service account token {JWT} issued") == "service account token [REDACTED:jwt] issued"


def test_bearer_header_keeps_scheme_and_drops_token() -> None:
    assert redact(f"Authorization: Bearer {OPAQUE_BEARER}") == "Authorization: Bearer [REDACTED:bearer-token]"


def test_bearer_jwt_inside_quoted_curl_header_is_named_jwt() -> None:
    text = f"curl -sS -H 'Authorization: Bearer {JWT}' https://state-hub.local/notes"
    assert redact(text) == "curl -sS -H 'Authorization: Bearer [REDACTED:jwt]' https://state-hub.local/notes"


def test_basic_auth_header_keeps_scheme_and_drops_credentials() -> None:
    assert redact("Authorization: Basic dXNlcjpwYXNz") == "Authorization: Basic [REDACTED:basic-auth]"


def test_basic_auth_outside_a_header_is_recognised_by_its_user_colon_password_payload() -> None:
    assert redact("sent Basic dXNlcjpwYXNz to proxy") == "sent Basic [REDACTED:basic-auth] to proxy"


def test_curl_user_password_flag_is_basic_auth() -> None:
    assert redact("curl -u admin:Tr0ub4dor https://x/api") == "curl -u [REDACTED:basic-auth] https://x/api"


def test_aws_credentials_file_is_redacted_key_by_key() -> None:
    text = (
        f"[default]\naws_access_key_id = {AWS_ACCESS_KEY_ID}\n"
        f"aws_secret_access_key = {AWS_SECRET}\nregion = eu-central-1\n"
    )
    expected = (
        "[default]\naws_access_key_id = [REDACTED:aws-access-key]\n"
        "aws_secret_access_key = [REDACTED:aws-secret-key]\nregion = eu-central-1\n"
    )
    assert redact(text) == expected


@pytest.mark.parametrize(
    ("token", "kind"),
    [
        (GHP, "github-token"),
        (GHO, "github-token"),
        (GITHUB_PAT, "github-token"),
        (GLPAT, "gitlab-token"),
        (SLACK, "slack-token"),
        (NPM, "npm-token"),
        (PYPI, "pypi-token"),
        (GOOGLE, "google-api-key"),
        (OPENBAO, "openbao-token"),
        (AWS_ACCESS_KEY_ID, "aws-access-key"),
    ],
    ids=["ghp", "gho", "github_pat", "glpat", "xoxb", "npm", "pypi", "aiza", "hvs", "akia"],
)
def test_vendor_token_in_free_text_is_replaced_by_its_kind(token: str, kind: str) -> None:
    assert redact(f"step 3/7 used {token} for upload") == f"step 3/7 used [REDACTED:{kind}] for upload"


def test_token_under_a_secret_env_name_is_named_by_its_shape() -> None:
    assert redact(f"GITHUB_TOKEN={GHP}") == "GITHUB_TOKEN=[REDACTED:github-token]"


def test_forgejo_token_header_and_env_are_redacted_but_bare_40_hex_commit_ids_are_not() -> None:
    assert redact(f"Authorization: token {FORGEJO}") == "Authorization: token [REDACTED:forgejo-token]"
    assert redact(f"FORGEJO_TOKEN={FORGEJO}") == "FORGEJO_TOKEN=[REDACTED:forgejo-token]"
    assert redact(f"built commit {FORGEJO}") == f"built commit {FORGEJO}"


def test_kubeconfig_loses_every_credential_its_ca_and_server_but_keeps_names() -> None:
    out = redact(KUBECONFIG)
    for secret in (CLIENT_KEY_DATA, CLIENT_CERT_DATA, SA_TOKEN, CA_DATA, "127.0.0.1:6443"):
        assert secret not in out
    assert "client-key-data: [REDACTED:kubeconfig]" in out
    assert "client-certificate-data: [REDACTED:kubeconfig]" in out
    assert "token: [REDACTED:kubeconfig]" in out
    assert _only_marker_kinds(out) == {"kubeconfig"}
    assert "certificate-authority-data: [REDACTED:kubeconfig]" in out
    assert "server: [REDACTED:kubeconfig]" in out
    for kept in ("name: k3d-railiance", "current-context: k3d-railiance"):
        assert kept in out


def test_kubeconfig_block_scalar_credentials_are_removed() -> None:
    text = "kind: Config\nusers:\n- name: a\n  user:\n    token: |\n      " + SA_TOKEN + "\n    username: a\n"
    assert redact(text) == (
        "kind: Config\nusers:\n- name: a\n  user:\n"
        "    token: |\n      [REDACTED:kubeconfig]\n    username: a\n"
    )


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("postgresql://user:s3cret@db:5432/app", "postgresql://[REDACTED:url-credentials]@db:5432/app"),
        ("https://user:pass@host/x", "https://[REDACTED:url-credentials]@host/x"),
        ("redis://:p4ssw0rd@cache:6379/0", "redis://[REDACTED:url-credentials]@cache:6379/0"),
        ("amqp://app:p@ss@rabbit/vhost", "amqp://[REDACTED:url-credentials]@rabbit/vhost"),
        (
            f"git clone https://x-access-token:{GHP}@github.com/org/repo.git",
            "git clone https://[REDACTED:github-token]@github.com/org/repo.git",
        ),
        (
            f"DATABASE_URL=postgresql://app:{AWS_SECRET[:12]}@db.internal:5432/app?sslmode=require",
            "DATABASE_URL=postgresql://[REDACTED:url-credentials]@db.internal:5432/app?sslmode=require",
        ),
    ],
)
def test_credentialed_url_keeps_scheme_and_host_and_drops_userinfo(text: str, expected: str) -> None:
    assert redact(text) == expected


def test_docker_config_json_auth_is_removed_and_registry_kept() -> None:
    doc = json.dumps({"auths": {"registry.example.com": {"auth": DOCKER_AUTH, "email": "ci@example.com"}}})
    out = json.loads(redact(doc))
    assert out == {
        "auths": {"registry.example.com": {"auth": "[REDACTED:docker-auth]", "email": "ci@example.com"}}
    }


def test_base64_dockerconfigjson_in_a_pull_secret_manifest_is_removed() -> None:
    encoded = _b64(json.dumps({"auths": {"ghcr.io": {"auth": DOCKER_AUTH}}}).encode())
    text = f"type: kubernetes.io/dockerconfigjson\ndata:\n  .dockerconfigjson: {encoded}\n"
    expected = "type: kubernetes.io/dockerconfigjson\ndata:\n  .dockerconfigjson: [REDACTED:docker-auth]\n"
    assert redact(text) == expected


def test_env_file_lines_keep_keys_and_lose_values() -> None:
    text = textwrap.dedent(
        """\
        DATABASE_PASSWORD=hunter2hunter2
        API_TOKEN=tok_4f9a8b7c6d5e
        export SECRET_KEY="django-insecure-9s8d7f6g"
        LOG_LEVEL=info
        DATABASE_HOST=db.internal
        """
    )
    expected = textwrap.dedent(
        """\
        DATABASE_PASSWORD=[REDACTED:env-secret]
        API_TOKEN=[REDACTED:env-secret]
        export SECRET_KEY="[REDACTED:env-secret]"
        LOG_LEVEL=info
        DATABASE_HOST=db.internal
        """
    )
    assert redact(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("password: correct horse battery staple", "password: [REDACTED:env-secret]"),
        ('{"api_key": "k-93jd82hd", "region": "eu"}', '{"api_key": "[REDACTED:env-secret]", "region": "eu"}'),
        ("{'client_secret': 'abc123xyz'}", "{'client_secret': '[REDACTED:env-secret]'}"),
        (
            "level=info msg=login passwd=letmein99 user=bob",
            "level=info msg=login passwd=[REDACTED:env-secret] user=bob",
        ),
        (
            "GET /cb?code=1&access_token=ya29xyz&state=2",
            "GET /cb?code=1&access_token=[REDACTED:env-secret]&state=2",
        ),
        ("helm upgrade --password s3cretPw --wait", "helm upgrade --password [REDACTED:env-secret] --wait"),
        ("spring.datasource.password=Sup3r", "spring.datasource.password=[REDACTED:env-secret]"),
        ("SENTRY_DSN=https://0a1b2c@o1.ingest.sentry.io/5", "SENTRY_DSN=[REDACTED:env-secret]"),
        ("Cookie: session=8f7e6d; theme=dark", "Cookie: [REDACTED:env-secret]"),
    ],
)
def test_secret_named_keys_in_yaml_json_logfmt_query_and_cli_keep_the_key_and_lose_the_value(
    text: str, expected: str
) -> None:
    assert redact(text) == expected


def test_status_prose_after_a_secret_key_survives_but_the_secret_inside_does_not() -> None:
    text = "auth: failed because password: hunter2 was rejected (HTTP 401)"
    assert redact(text) == "auth: failed because password: [REDACTED:env-secret] was rejected (HTTP 401)"


def test_full_environment_dump_is_replaced_as_one_env_dump() -> None:
    dump = textwrap.dedent(
        """\
        PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin
        HOSTNAME=hello-web-7d9f8c6b5-x2kqz
        HOME=/root
        KUBERNETES_SERVICE_HOST=10.43.0.1
        KUBERNETES_SERVICE_PORT=443
        DATABASE_URL=postgresql://app:pw1@db:5432/app
        APP_SECRET=a8s7d6f5g4h3
        LANG=C.UTF-8"""
    )
    text = f"$ kubectl exec deploy/hello-web -- env\n{dump}\n$ exit"
    assert redact(text) == "$ kubectl exec deploy/hello-web -- env\n[REDACTED:env-dump]\n$ exit"


# --------------------------------------------------------------------------------------------------
# Ordinary evidence survives unchanged
# --------------------------------------------------------------------------------------------------

NEGATIVES = [
    "commit 3f2c1b0a9e8d7c6b5a4f3e2d1c0b9a8f7e6d5c4b",
    "image ghcr.io/railiance/hello-web@sha256:"
    + "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
    "digest sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    "run id 123e4567-e89b-12d3-a456-426614174000",
    "pod hello-web-canary-7d9f8c6b5d-x2kqz Running 2/2, deployment/hello-web rolled out",
    "GET /healthz returned 200 in 12ms; POST /api/notes returned 201",
    "2024-05-01T12:00:00.123456Z stage2 canary started at 2024-05-01 12:00:05+02:00",
    "https://state-hub.example.com/progress/42?view=full",
    "OpenBao path configured, token exchange returned 200",
    "secret read from kv/apps/hello-web/api",
    "vault.hashicorp.com/agent-inject-secret-db: kv/apps/hello-web/db",
    (
        "env:\n- name: DATABASE_URL\n  valueFrom:\n    secretKeyRef:\n"
        "      name: hello-web-db\n      key: DATABASE_URL\n"
    ),
    (
        "secretName: hello-web-tls\nexistingSecret: hello-web-db\n"
        "tokenPath: /var/run/secrets/kubernetes.io/serviceaccount/token"
    ),
    "imagePullSecrets:\n- name: regcred\nautomountServiceAccountToken: false",
    "password: ${DB_PASSWORD}\ntoken: {{ .Values.token }}\napi_key: <set-me>\nsecret: '***'",
    'auth: ok\npassword: set\ntoken: null\nsecret: ""',
    "Basic checks passed; Bearer token exchange succeeded",
    "tests: pass: 42, fail: 0, skipped: 3",
    "ssh://git@forgejo.local:2222/railiance/hello-web.git",
    "kind: Secret\nmetadata:\n  name: hello-web-db\n  namespace: hello-web",
    "[REDACTED:jwt] and [REDACTED:env-secret] are already markers",
    "Stage1ValidationPassedEvent recorded for hello-web@9f86d081884c",
    "passwordPolicy: strict\ntoken_ttl: 3600\nauth_type: oidc\napi_key_name: STATE_HUB_KEY",
]


@pytest.mark.parametrize("text", NEGATIVES)
def test_ordinary_evidence_is_not_mangled(text: str) -> None:
    assert (redact(text), find_secrets(text)) == (text, [])


# --------------------------------------------------------------------------------------------------
# Idempotence, spans, embedding
# --------------------------------------------------------------------------------------------------


def _all_texts() -> list[str]:
    return [s[1] for s in SAMPLES] + NEGATIVES + [KUBECONFIG, "\n".join(s[1] for s in SAMPLES)]


def test_redaction_is_idempotent_over_every_sample() -> None:
    for text in _all_texts():
        once = redact(text)
        assert redact(once) == once, text
        assert find_secrets(once) == []


def test_redacted_text_contains_no_secret_by_the_value_heuristic_either() -> None:
    for _, text, secrets, _ in SAMPLES:
        out = redact(text)
        assert not contains_secret(out)
        assert all(s not in out for s in secrets)


@pytest.mark.parametrize(
    ("text", "secret", "kind"),
    [
        (f"token {JWT} end", JWT, "jwt"),
        (f"Authorization: Bearer {OPAQUE_BEARER}\n", OPAQUE_BEARER, "bearer-token"),
        ("postgresql://user:s3cret@db:5432/app", "user:s3cret", "url-credentials"),
        ("DATABASE_PASSWORD=hunter2hunter2\n", "hunter2hunter2", "env-secret"),
        (f"x\n{EC_KEY}\ny", EC_KEY, "pem-private-key"),
        (f"aws_secret_access_key={AWS_SECRET}", AWS_SECRET, "aws-secret-key"),
    ],
)
def test_find_secrets_span_points_exactly_at_the_secret(text: str, secret: str, kind: str) -> None:
    start = text.index(secret)
    assert find_secrets(text) == [Finding(kind, start, start + len(secret))]


def test_findings_are_sorted_and_non_overlapping() -> None:
    text = "\n".join(s[1] for s in SAMPLES)
    findings = find_secrets(text)
    assert len(findings) >= len(SAMPLES)
    for a, b in pairwise(findings):
        assert a.end <= b.start


def test_secret_in_a_long_log_line_is_removed_and_the_rest_of_the_line_preserved() -> None:
    before = (
        "2024-05-01T12:00:03Z INFO stage2 candidate=hello-web@sha256:"
        "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
        " commit=3f2c1b0a9e8d7c6b5a4f3e2d1c0b9a8f7e6d5c4b pod=hello-web-canary-7d9f8c6b5d-x2kqz status=200 "
        "request GET https://registry.local:5000/v2/hello-web/manifests/v1 with header Authorization: Bearer "
    )
    after = ' retry=0 latency_ms=41 namespace=hello-web msg="manifest fetched"'
    assert redact(before + GHP + after) == before + "[REDACTED:github-token]" + after
    assert redact(before + OPAQUE_BEARER + after) == before + "[REDACTED:bearer-token]" + after


# --------------------------------------------------------------------------------------------------
# Structured values
# --------------------------------------------------------------------------------------------------


def test_redact_value_walks_nested_structures_and_redacts_secret_fields() -> None:
    value = {
        "candidate": "hello-web@sha256:" + "a" * 64,
        "db": {"password": "hunter2hunter2", "host": "db.internal", "secretName": "hello-web-db"},
        "headers": [{"Authorization": f"Bearer {OPAQUE_BEARER}"}, {"Accept": "application/json"}],
        "env": [
            {"name": "API_TOKEN", "valueFrom": {"secretKeyRef": {"name": "hello-web-api", "key": "token"}}},
            {"name": "LOG_LEVEL", "value": "info"},
        ],
        "notes": ("pushed with " + GHP, 200, None, True),
        "vault": {
            "token_path": "kv/apps/hello-web/api",
            "existingSecret": "hello-web-db",
            "apiKey": "kv/apps/x/api",
        },
        "already": {"token": "[REDACTED:jwt]"},
        "count": 3,
    }
    expected = {
        "candidate": "hello-web@sha256:" + "a" * 64,
        "db": {"password": "[REDACTED:secret-field]", "host": "db.internal", "secretName": "hello-web-db"},
        "headers": [{"Authorization": "[REDACTED:secret-field]"}, {"Accept": "application/json"}],
        "env": [
            {"name": "API_TOKEN", "valueFrom": {"secretKeyRef": {"name": "hello-web-api", "key": "token"}}},
            {"name": "LOG_LEVEL", "value": "info"},
        ],
        "notes": ("pushed with [REDACTED:github-token]", 200, None, True),
        "vault": {
            "token_path": "kv/apps/hello-web/api",
            "existingSecret": "hello-web-db",
            "apiKey": "kv/apps/x/api",
        },
        "already": {"token": "[REDACTED:jwt]"},
        "count": 3,
    }
    assert redact_value(value) == expected


def test_redact_value_never_mutates_its_input() -> None:
    value = {"a": [{"password": "p4ss"}, f"Bearer {OPAQUE_BEARER}"], "t": ("x",)}
    snapshot = copy.deepcopy(value)
    out = redact_value(value)
    assert value == snapshot
    assert out is not value and out["a"] is not value["a"]


def test_redact_value_keeps_tuple_and_namedtuple_types() -> None:
    Pair = namedtuple("Pair", "left right")
    assert redact_value(Pair("ok", f"key {GOOGLE}")) == Pair("ok", "key [REDACTED:google-api-key]")
    assert redact_value(("a", JWT)) == ("a", "[REDACTED:jwt]")


def test_redact_value_redacts_secrets_inside_embedded_json_strings() -> None:
    value = {"credentials": json.dumps({"password": "hunter2hunter2"})}
    assert redact_value(value) == {"credentials": json.dumps({"password": "[REDACTED:env-secret]"})}


def test_redact_value_is_idempotent() -> None:
    value = {"password": "x1", "log": KUBECONFIG, "list": [f"token={GHP}"]}
    once = redact_value(value)
    assert redact_value(once) == once


# --------------------------------------------------------------------------------------------------
# Heuristics exposed to the manifest gate
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    [
        "password",
        "PASSWORD",
        "DATABASE_PASSWORD",
        "db_passwd",
        "MYSQL_ROOT_PASSWORD",
        "PGPASSWORD",
        "secret",
        "clientSecret",
        "SECRET_KEY",
        "token",
        "accessToken",
        "X-Auth-Token",
        "_authToken",
        "api_key",
        "apiKey",
        "APIKEY",
        "X-Api-Key",
        "ACCESS_KEY",
        "aws_secret_access_key",
        "private_key",
        "privateKey",
        "credentials",
        "GOOGLE_APPLICATION_CREDENTIALS_JSON",
        "auth",
        "Authorization",
        "SENTRY_DSN",
        "DB_PWD",
        "client-key-data",
        "client-certificate-data",
        "secret_id",
    ],
)
def test_is_secret_key_recognises_secret_names_in_every_style(name: str) -> None:
    assert is_secret_key(name) is True


@pytest.mark.parametrize(
    "name",
    [
        "secretName",
        "secretKeyRef",
        "secretRef",
        "existingSecret",
        "tokenPath",
        "password_ref",
        "db_password_path",
        "api_key_name",
        "token_file",
        "auth_type",
        "token_ttl",
        "PWD",
        "key",
        "name",
        "DATABASE_URL",
        "public_key",
        "certificate-authority-data",
        "author",
        "authority",
        "tokenizer",
        "passwordPolicy",
        "pass",
        "apiVersion",
        "token_url",
    ],
)
def test_is_secret_key_ignores_references_and_ordinary_names(name: str) -> None:
    assert is_secret_key(name) is False


@pytest.mark.parametrize(
    "value",
    [
        GHP,
        JWT,
        AWS_SECRET,
        OPAQUE_BEARER,
        GOOGLE,
        "q8Vz3LmN0pR7sT2uW5xYa1",
        _rand(32),
        "postgresql://u:p4ss@db/app",
    ],
)
def test_looks_like_secret_value_flags_secret_shapes_and_random_tokens(value: str) -> None:
    assert looks_like_secret_value(value) is True


@pytest.mark.parametrize(
    "value",
    [
        "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        "3f2c1b0a9e8d7c6b5a4f3e2d1c0b9a8f7e6d5c4b",
        "123e4567-e89b-12d3-a456-426614174000",
        "hello-web-canary-7d9f8c6b5d-x2kqz",
        "ghcr.io/railiance/hello-web@sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
        "kv/apps/hello-web/api",
        "/var/run/secrets/kubernetes.io/serviceaccount/token",
        "https://state-hub.example.com/progress",
        "Stage1ValidationPassedEvent",
        "ImagePullBackOffErrorRetry2",
        "2024-05-01T12:00:00.123456Z",
        "info",
        "hunter2",
        "[REDACTED:secret-field]",
        "application/vnd.oci.image.manifest.v1+json",
    ],
)
def test_looks_like_secret_value_does_not_flag_ordinary_evidence(value: str) -> None:
    assert looks_like_secret_value(value) is False


def test_contains_secret_is_true_exactly_when_something_would_be_redacted() -> None:
    for text in _all_texts():
        assert contains_secret(text) == (redact(text) != text), text
