"""A corpus of realistic FAKE secret shapes and of real-looking evidence that must stay readable.

Every secret here is generated from a fixed seed (no real credential). Each entry names the shape,
the text it appears in (as it would reach us: a log line, a values file, an env dump, a header...)
and ``secret``: the part that must not survive redaction. ``EVIDENCE`` is text that must come out of
redaction unchanged (digests, commit ids, uuids, timestamps, image references...).

Used by tests/test_secret_corpus.py (every shape redacted, every piece of evidence kept) and by
bench/secret_detectors.py (the detection rate of each candidate detector).
"""

from __future__ import annotations

import base64
import json
import random
from dataclasses import dataclass

_R = random.Random(20261130)
_ALNUM = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
_UPPER_DIGITS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"
_HEX = "0123456789abcdef"
_B64 = _ALNUM + "+/"
_URLSAFE = _ALNUM + "-_"


def _s(alphabet: str, n: int) -> str:
    return "".join(_R.choice(alphabet) for _ in range(n))


def _b64(n_bytes: int) -> str:
    return base64.b64encode(bytes(_R.getrandbits(8) for _ in range(n_bytes))).decode()


def _pem(label: str, n_bytes: int = 600) -> str:
    body = _b64(n_bytes)
    lines = [body[i : i + 64] for i in range(0, len(body), 64)]
    return f"-----BEGIN {label}-----\n" + "\n".join(lines) + f"\n-----END {label}-----"


@dataclass(frozen=True)
class Shape:
    name: str
    text: str
    secret: str


def _jwt() -> str:
    def seg(obj: dict[str, object]) -> str:
        return base64.urlsafe_b64encode(json.dumps(obj).encode()).decode().rstrip("=")

    return (
        seg({"alg": "RS256", "typ": "JWT", "kid": _s(_HEX, 16)})
        + "."
        + seg({"sub": "system:serviceaccount:shop:api", "iat": 1764460800, "jti": _s(_HEX, 32)})
        + "."
        + _s(_URLSAFE, 86)
    )


def _build() -> list[Shape]:
    out: list[Shape] = []

    def add(name: str, text: str, secret: str) -> None:
        assert secret in text, name
        out.append(Shape(name, text, secret))

    aws_id = "AKIA" + _s(_UPPER_DIGITS, 16)
    aws_secret = _s(_B64, 40)
    add("aws-access-key-id", f"using access key {aws_id} for s3 upload", aws_id)
    add("aws-secret-env", f"AWS_SECRET_ACCESS_KEY={aws_secret}", aws_secret)
    add(
        "aws-credentials-file",
        f"[default]\naws_access_key_id = {aws_id}\naws_secret_access_key = {aws_secret}\n",
        aws_secret,
    )
    sts = "ASIA" + _s(_UPPER_DIGITS, 16)
    add("aws-session-key-id", f"assumed role, key={sts} expires in 3600s", sts)
    tok = _b64(180)
    add("aws-session-token", f"aws_session_token = {tok}", tok)
    gcp_key = _pem("PRIVATE KEY", 1200)
    sa = json.dumps(
        {
            "type": "service_account",
            "project_id": "shop-prod-4411",
            "private_key_id": _s(_HEX, 40),
            "private_key": gcp_key + "\n",
            "client_email": "deployer@shop-prod-4411.iam.gserviceaccount.com",
            "client_id": "1" + _s("0123456789", 20),
        },
        indent=2,
    )
    add("gcp-service-account-json", sa, gcp_key.splitlines()[3])
    gkey = "AIza" + _s(_URLSAFE, 35)
    add("google-api-key", f"maps key {gkey} rejected", gkey)
    goauth = "ya29." + _s(_URLSAFE, 120)
    add("google-oauth-access-token", f"token {goauth} expired", goauth)
    az_key = _b64(64)
    add(
        "azure-storage-connection-string",
        f"DefaultEndpointsProtocol=https;AccountName=shopassets;AccountKey={az_key};"
        "EndpointSuffix=core.windows.net",
        az_key,
    )
    az_sas = f"sv=2022-11-02&ss=b&srt=co&sp=rl&se=2026-12-01T00:00:00Z&sig={_s(_ALNUM, 43)}%3D"
    add("azure-sas-url", f"GET https://shopassets.blob.core.windows.net/img?{az_sas} 403", az_sas[-46:])
    az_secret = _s(_ALNUM, 3) + "8Q~" + _s(_ALNUM + "~._-", 34)
    add("azure-ad-client-secret", f"AZURE_CLIENT_SECRET={az_secret}", az_secret)
    ghp = "ghp_" + _s(_ALNUM, 36)
    add("github-pat-classic", f"git clone https://{ghp}@github.com/acme/shop.git", ghp)
    gpat = "github_pat_" + _s(_ALNUM, 22) + "_" + _s(_ALNUM, 59)
    add("github-pat-fine-grained", f"GH_TOKEN={gpat}", gpat)
    gho = "gho_" + _s(_ALNUM, 36)
    add("github-oauth-token", f"Authorization: token {gho}", gho)
    ghs = "ghs_" + _s(_ALNUM, 36)
    add("github-app-token", f"installation token {ghs} issued", ghs)
    glpat = "glpat-" + _s(_URLSAFE, 20)
    add("gitlab-pat", f"PRIVATE-TOKEN: {glpat}", glpat)
    glrt = "glrt-" + _s(_URLSAFE, 20)
    add("gitlab-runner-token", f'token = "{glrt}"', glrt)
    slack_bot = f"xoxb-{_s('0123456789', 12)}-{_s('0123456789', 13)}-{_s(_ALNUM, 24)}"
    add("slack-bot-token", f"SLACK_BOT_TOKEN={slack_bot}", slack_bot)
    slack_user = f"xoxp-{_s('0123456789', 12)}-{_s('0123456789', 12)}-{_s('0123456789', 13)}-{_s(_HEX, 32)}"
    add("slack-user-token", f"slack client init token={slack_user}", slack_user)
    hook = f"T{_s(_UPPER_DIGITS, 8)}/B{_s(_UPPER_DIGITS, 10)}/{_s(_ALNUM, 24)}"
    add("slack-webhook", f"posting to https://hooks.slack.com/services/{hook}", hook)
    sk_live = "sk_live_" + _s(_ALNUM, 99)
    add("stripe-secret-key", f"stripe.api_key = '{sk_live}'", sk_live)
    rk_live = "rk_live_" + _s(_ALNUM, 99)
    add("stripe-restricted-key", f"charge failed with key {rk_live}", rk_live)
    whsec = "whsec_" + _s(_ALNUM, 32)
    add("stripe-webhook-secret", f"STRIPE_WEBHOOK={whsec}", whsec)
    oai = "sk-proj-" + _s(_URLSAFE, 74) + "T3BlbkFJ" + _s(_URLSAFE, 74)
    add("openai-project-key", f"openai.OpenAI(api_key={oai!r})", oai)
    oai_old = "sk-" + _s(_ALNUM, 20) + "T3BlbkFJ" + _s(_ALNUM, 20)
    add("openai-legacy-key", f"request with {oai_old} returned 429", oai_old)
    ant = "sk-ant-api03-" + _s(_URLSAFE, 93) + "AA"
    add("anthropic-api-key", f"x-api-key: {ant}", ant)
    npm = "npm_" + _s(_ALNUM, 36)
    add("npm-token", f"//registry.npmjs.org/:_authToken={npm}", npm)
    pypi = "pypi-AgEIcHlwaS5vcmc" + _s(_URLSAFE, 140)
    add("pypi-token", f"[pypi]\n  username = __token__\n  password = {pypi}\n", pypi)
    hf = "hf_" + _s(_ALNUM, 34)
    add("huggingface-token", f"downloading with {hf}", hf)
    sg = "SG." + _s(_URLSAFE, 22) + "." + _s(_URLSAFE, 43)
    add("sendgrid-key", f"mailer configured key {sg}", sg)
    twilio = "SK" + _s(_HEX, 32)
    add("twilio-api-key", f"twilio key {twilio} sid AC{_s(_HEX, 32)}", twilio)
    dd = _s(_HEX, 32)
    add("datadog-api-key", f"DD_API_KEY={dd}", dd)
    hvs = "hvs." + _s(_URLSAFE, 90)
    add("openbao-token", f"X-Vault-Token: {hvs}", hvs)
    dop = "dop_v1_" + _s(_HEX, 64)
    add("digitalocean-token", f"doctl auth init -t {dop}", dop)
    shpat = "shpat_" + _s(_HEX, 32)
    add("shopify-token", f"X-Shopify-Access-Token {shpat}", shpat)

    for label in (
        "RSA PRIVATE KEY",
        "PRIVATE KEY",
        "EC PRIVATE KEY",
        "ENCRYPTED PRIVATE KEY",
        "DSA PRIVATE KEY",
    ):
        pem = _pem(label, 800 if "RSA" in label else 240)
        add(
            f"pem-{label.lower().replace(' ', '-')}",
            f"tls:\n  key: |\n{_indent(pem, 4)}\n",
            pem.splitlines()[2],
        )
    openssh = _pem("OPENSSH PRIVATE KEY", 400)
    add("openssh-private-key", openssh, openssh.splitlines()[2])
    pgp = _pem("PGP PRIVATE KEY BLOCK", 900)
    add("pgp-private-key", "gpg --export-secret-keys:\n" + pgp, pgp.splitlines()[2])
    pem_one_line = _pem("RSA PRIVATE KEY", 600).replace("\n", "\\n")
    add(
        "pem-in-json-string",
        json.dumps({"key": "x"}).replace('"x"', f'"{pem_one_line}"'),
        pem_one_line[80:140],
    )
    b64_pem = base64.b64encode(_pem("EC PRIVATE KEY", 120).encode()).decode()
    add("pem-base64-helm-value", f"signing:\n  ecKeyPem: {b64_pem}\n", b64_pem)
    age = "AGE-SECRET-KEY-1" + _s("QPZRY9X8GF2TVDW0S3JN54KHCE6MUA7L", 58)
    add("age-secret-key", f"SOPS_AGE_KEY={age}", age)

    jwt = _jwt()
    add("jwt-bare", f"session established {jwt}", jwt)
    add("jwt-authorization-header", f"Authorization: Bearer {jwt}", jwt)
    bearer = _s(_URLSAFE, 48)
    add("opaque-bearer-token", f'curl -H "Authorization: Bearer {bearer}" https://api.example.org/v1', bearer)
    add("bearer-in-log", f"request headers: {{'authorization': 'Bearer {bearer[:40]}'}}", bearer[:40])
    basic = base64.b64encode(b"deploy:Tr0ub4dor&3-horse").decode()
    add("basic-auth-header", f"Authorization: Basic {basic}", basic)
    pw = _s(_ALNUM, 18)
    add("postgres-url", f"DATABASE_URL=postgresql://shop:{pw}@db.internal:5432/shop", pw)
    pw2 = _s(_ALNUM, 14)
    add("mysql-url", f"connecting to mysql://root:{pw2}@10.0.0.12/orders failed", pw2)
    pw3 = _s(_ALNUM, 16)
    add("mongodb-srv-url", f"mongodb+srv://app:{pw3}@cluster0.abcd1.mongodb.net/?retryWrites=true", pw3)
    pw4 = _s(_ALNUM, 20)
    add("redis-url", f"REDIS_URL=redis://:{pw4}@redis-master:6379/0", pw4)
    pw5 = _s(_ALNUM, 12)
    add("amqp-url", f"broker: amqp://guest:{pw5}@rabbit:5672//", pw5)
    pw6 = _s(_ALNUM, 16)
    add(
        "https-credentialed-url",
        f"pip install --index-url https://ci:{pw6}@pkgs.example.org/simple shop",
        pw6,
    )
    pw7 = _s(_ALNUM, 16)
    add(
        "jdbc-password-param",
        f"jdbc:sqlserver://sql1:1433;databaseName=shop;user=sa;password={pw7};encrypt=true",
        pw7,
    )
    pw8 = _s(_ALNUM, 22)
    add("odbc-connection-string", f"Server=tcp:sql1,1433;Database=shop;User ID=app;Pwd={pw8};", pw8)

    cad = _b64(900)
    ckd = _b64(1200)
    ktok = _s(_ALNUM, 6) + "." + _s(_ALNUM, 16)
    kube = (
        "apiVersion: v1\nkind: Config\nclusters:\n- cluster:\n"
        f"    certificate-authority-data: {cad}\n    server: https://10.20.0.1:6443\n  name: prod\n"
        "users:\n- name: admin\n  user:\n"
        f"    client-certificate-data: {_b64(900)}\n    client-key-data: {ckd}\n    token: {ktok}\n"
    )
    add("kubeconfig-client-key-data", kube, ckd)
    add("kubeconfig-ca-data", kube, cad)
    add("kubeconfig-token", kube, ktok)
    sat = _jwt()
    add("kubeconfig-json-token", json.dumps({"kind": "Config", "users": [{"user": {"token": sat}}]}), sat)

    pg = _s(_ALNUM, 20)
    env = (
        f"PATH=/usr/local/bin:/usr/bin\nHOSTNAME=shop-7d9f\nHOME=/root\nLANG=C.UTF-8\n"
        f"KUBERNETES_SERVICE_HOST=10.96.0.1\nPOSTGRES_PASSWORD={pg}\nAPP_ENV=production\n"
    )
    add("env-dump", env, pg)
    sess = _s(_ALNUM, 32)
    add("env-secret-key-base", f"export SECRET_KEY_BASE={_s(_HEX, 128)}", "")  # replaced below
    out.pop()
    skb = _s(_HEX, 128)
    add("env-secret-key-base", f"export SECRET_KEY_BASE={skb}", skb)
    add("set-cookie-session", f"Set-Cookie: sessionid={sess}; Path=/; HttpOnly; Secure", sess)
    csrf = _s(_URLSAFE, 40)
    add("cookie-header", f"Cookie: _ga=GA1.2.1234.5678; csrftoken={csrf}; theme=dark", csrf)
    rails = _b64(90).rstrip("=") + "--" + _s(_HEX, 40)
    add("rails-session-cookie", f"Cookie: _shop_session={rails}", rails)
    dock = base64.b64encode(b"robot$ci:" + _s(_ALNUM, 32).encode()).decode()
    add("docker-config-auth", json.dumps({"auths": {"registry.example.org": {"auth": dock}}}), dock)
    helm_pw = _s(_ALNUM, 24)
    add("helm-values-password", f"postgresql:\n  auth:\n    password: {helm_pw}\n", helm_pw)
    k8s_secret = base64.b64encode(_s(_ALNUM, 24).encode()).decode()
    add(
        "k8s-secret-manifest-data",
        f"apiVersion: v1\nkind: Secret\nmetadata:\n  name: api\ndata:\n  API_KEY: {k8s_secret}\n",
        k8s_secret,
    )
    cli_pw = _s(_ALNUM, 16)
    add("cli-password-flag", f"mysql --password={cli_pw} -h db", cli_pw)
    curl_pw = _s(_ALNUM, 14)
    add("curl-user-flag", f"curl -u admin:{curl_pw} https://nexus.internal/repo", curl_pw)
    generic = _s(_ALNUM, 40)
    add("generic-high-entropy-in-log", f"upstream handshake ok, key material {generic}", generic)
    hex_key = _s(_HEX, 64)
    add("hex-api-key-in-json", json.dumps({"apiKey": hex_key, "region": "eu"}), hex_key)
    return out


def _indent(text: str, n: int) -> str:
    return "\n".join(" " * n + line for line in text.splitlines())


SHAPES: tuple[Shape, ...] = tuple(_build())

EVIDENCE: tuple[str, ...] = (
    "sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
    "registry.example.org/shop/api@sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
    "ghcr.io/acme/shop-api:1.4.2@sha256:2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae",
    "registry.local:5000/payments/worker:v2026.11.30-rc.1",
    "commit 3f2a9c4e5b6d7a8f9e0d1c2b3a4f5e6d7c8b9a0f on main",
    "revision e83c5163316f89bfbde7d9ab23ca2e25604af290 built by workflow 1234567890",
    "short commit 3f2a9c4 tagged v1.4.2",
    "event 550e8400-e29b-41d4-a716-446655440000 recorded",
    "trace_id=4bf92f3577b34da6a3ce929d0e0e4736 span_id=00f067aa0ba902b7",
    "2026-11-30T23:19:48.123456Z stage 2 started",
    "2026-11-30 23:19:48+00:00 canary at 10%",
    "pod shop-api-7d9f8b6c5d-x2k4q Ready after 12.3s",
    "deployment.apps/shop-api-canary rolled out (revision 42)",
    "helm release shop-api revision 17 deployed, chart shop-api-1.4.2",
    "GET /healthz 200 3ms",
    "HTTP 503 from http://shop-api.shop.svc.cluster.local:8080/ready",
    "secretKeyRef: {name: shop-db, key: password}",
    "existingSecret: shop-postgres-credentials",
    "password: ${DB_PASSWORD}",
    "token: vault:kv/apps/shop/api#token",
    "openbao path kv/data/apps/shop/stripe",
    "ledger head 1042:7d865e959b2466918c9863afca942d0fb89d7c9ac0c99bafc3749504ded97730",
    'rate(http_requests_total{job="shop-api",code=~"5.."}[5m]) > 0.02',
    "p99 latency 812ms over 1440 samples, threshold 900ms",
    "X-Railiance-Canary: always",
    "https://statehub.example.org/notes/shop-api/550e8400-e29b-41d4-a716-446655440000",
    "sha512:cf83e1357eefb8bdf1542850d66d8007d620e4050b5715dc83f4a921d36ce9ce47d0d13c5d85f2b0ff8318d2877eec2f63b931bd47417a81a538327af927da3e",
    "ImagePullBackOff: registry.example.org/shop/api:1.4.3 not found",
    "namespace shop-canary, service account shop-api-deployer",
    "KubernetesVersion v1.31.2, node kwok-node-0",
    "OCI manifest application/vnd.oci.image.manifest.v1+json size 1234",
    "Dagster run 8a5c3f2e-1d4b-4c6a-9e7f-0b1a2c3d4e5f succeeded",
    'etag W/"5f3c2a1b" last-modified Mon, 30 Nov 2026 23:19:48 GMT',
    "workflow https://github.com/acme/shop/actions/runs/1234567890/job/9876543210",
    "go.sum h1:Zq8C1fzKe8NlIrB0qf4Q3fB5KbJqZp2gYkLk0vqGm1E=",
    "cosign signature MEUCIQDx digest verified for sha256:2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae",
    "resourceVersion 1234567 uid 9d2f3c4e-5b6a-4f7e-8d9c-0a1b2c3d4e5f",
    "kwok.x-k8s.io/stage: ready; app.kubernetes.io/name=shop-api",
    "backup shop-db-2026-11-30T02:00:00Z verified (pg_dump 16.4)",
    "CamelCaseIdentifierForCanaryDistinguishability",
)
